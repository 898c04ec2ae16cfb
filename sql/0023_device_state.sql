-- pifleet 0023: each board's live state, as its capabilities report it (docs/protocol.md, "State"): the newest
-- values per capability — a blind's position and motion (POST /s), a relay's on/off, a sensor's or a button's
-- last telemetry (POST /t). One row per (board, capability), replaced as reports arrive; the history of the
-- numbers stays in `readings`.
create table device_state (
    device_id   text not null references devices (id) on delete cascade,
    capability  text not null,
    state       jsonb not null,                    -- the capability's STATE values, as last reported
    at          timestamptz not null default now(),
    primary key (device_id, capability)
);
