-- pifleet 0020: MicroPython updated over the air (docs/flashing.md, "OTA"). The catalog records whether an image's
-- partition table is OTA-capable (otadata and two app slots); a firmware rollout moves boards from the image
-- they run to another one, one board first, then in waves, halting at the first failure.
alter table firmware add column ota boolean not null default false;

create table firmware_rollouts (
    id          bigserial primary key,
    firmware_id bigint not null references firmware (id) on delete cascade,
    target      jsonb not null,                               -- {"role": R} or {"devices": [names]}
    state       text not null default 'running' check (state in ('running', 'done', 'halted')),
    reason      text,
    created_by  text,
    created_at  timestamptz not null default now(),
    finished_at timestamptz
);

create table firmware_rollout_boards (
    rollout_id  bigint not null references firmware_rollouts (id) on delete cascade,
    device_id   text not null references devices (id) on delete cascade,
    position    int not null,                                 -- 0: the canary
    state       text not null default 'pending' check (state in
                    ('pending', 'transferring', 'rebooting', 'confirming', 'done', 'rolled_back', 'failed')),
    progress    int not null default 0,
    reason      text,
    from_version text,
    to_version  text,
    updated_at  timestamptz not null default now(),
    primary key (rollout_id, device_id)
);
create index firmware_rollout_boards_by_device on firmware_rollout_boards (device_id);
