-- pifleet 0003: adoption of boards that run MicroPython and the agent but have no identity here (flashed
-- elsewhere, or factory reset). A board announces itself with its MAC, a nonce and a proof derived from the
-- short code its console prints; a person confirms that code; only then is an identity created and handed out.
-- Depends on 0002 (devices.mac, device_secrets).

create table adoptions (
    id            bigserial primary key,
    mac           text not null unique,            -- aa:bb:cc:dd:ee:ff, as the board reports it
    chip          text not null default '',
    nonce         bytea not null,                  -- the board's, new at every boot of an unpaired board
    proof         bytea not null,                  -- SHA-256("proof" ‖ K), K stretched from nonce and code
    address       text,                            -- source of the last announcement
    port          integer,
    firmware      text,
    mpy           integer,
    agent_version text,
    state         text not null default 'waiting'
                  check (state in ('waiting', 'adopted', 'rejected', 'locked')),
    attempts      integer not null default 0,      -- wrong codes entered for this nonce
    device_id     text,                            -- the identity created on confirmation
    -- K, kept from confirmation until the board has its identity sealed under it (the secret itself is in
    -- device_secrets, so K exposes nothing the database does not hold anyway); cleared by a new nonce
    key           bytea,
    first_seen    timestamptz not null default now(),
    last_seen     timestamptz not null default now(),
    decided_at    timestamptz,
    delivered_at  timestamptz                      -- when the board last fetched its sealed identity
);

create index adoptions_by_state on adoptions (state, last_seen desc);
