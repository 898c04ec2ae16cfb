-- pifleet 0005: sensor readings the master takes, and the state of threshold triggers.

create table readings (
    id          bigserial primary key,
    device_id   text not null references devices (id) on delete cascade,
    capability  text not null,
    path        text not null,                     -- dotted path into the command's result: "celsius"
    value       double precision not null,
    at          timestamptz not null default now()
);
create index readings_by_source on readings (device_id, capability, path, at desc);

create table threshold_state (
    job_id      bigint primary key references jobs (id) on delete cascade,
    armed       boolean not null default true,     -- fires at the next crossing; re-armed past the hysteresis
    since       timestamptz,                       -- when the value first crossed (for "for_s")
    last_value  double precision,
    last_read   timestamptz
);
