-- pifleet 0001: the fleet (roles, devices, their capabilities) and the job engine (jobs, executions).
-- Applied once by pifleet.storage.migrations, inside one transaction, recorded in schema_migrations.

create table roles (
    name         text primary key,
    description  text not null default '',
    -- capability names a board with this role is expected to offer
    capabilities text[] not null default '{}',
    created_at   timestamptz not null default now()
);

create table devices (
    id              text primary key,              -- the CoAP endpoint name (RFC 9176 "ep"), stable per board
    name            text not null unique,          -- what people and jobs call it: "blind-1"
    kind            text not null default 'pifleet.esp32',  -- RFC 9176 endpoint type ("et")
    role            text references roles (name) on update cascade,
    address         text,                          -- source address of the last registration
    port            integer,
    registration_id text unique,                   -- the Location-Path the board updates: rd/<registration_id>
    lifetime_s      integer not null default 60,
    last_seen       timestamptz,
    -- set when the master could not reach the board; cleared by its next registration update
    unreachable     text,
    firmware        text,
    mpy             integer,
    agent_version   text,
    links           text not null default '',      -- the link-format payload of its registration
    created_at      timestamptz not null default now()
);

create table device_capabilities (
    device_id  text not null references devices (id) on delete cascade,
    name       text not null,
    version    text not null,
    commands   jsonb not null,                     -- {command: {param: schema}} as the board declares it
    primary key (device_id, name)
);

create table jobs (
    id          bigserial primary key,
    name        text not null unique,
    spec        jsonb not null,                    -- the job as the user wrote it (pifleet.model.JobSpec)
    enabled     boolean not null default true,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create table job_executions (
    id            uuid primary key,                -- also the command's execution id on the wire
    job_id        bigint not null references jobs (id) on delete cascade,
    parent_id     uuid references job_executions (id) on delete cascade,
    step          integer not null default 0,      -- 0: the job's own action; n: its n-th follow-up
    device_id     text references devices (id) on delete set null,
    capability    text not null,
    command       text not null,
    params        jsonb not null default '{}',
    state         text not null check (state in
                    ('scheduled', 'running', 'succeeded', 'failed', 'cancelled')),
    scheduled_for timestamptz not null,
    attempt       integer not null default 0,      -- attempts made so far
    max_attempts  integer not null default 1,
    started_at    timestamptz,
    finished_at   timestamptz,
    result        jsonb,
    error         text,
    created_at    timestamptz not null default now()
);

-- one run of a job's own trigger per instant: planning the next occurrence twice is harmless
create unique index job_executions_one_root_per_time
    on job_executions (job_id, scheduled_for) where parent_id is null;
-- one follow-up execution per (parent, step)
create unique index job_executions_one_follow_up
    on job_executions (parent_id, step) where parent_id is not null;
create index job_executions_by_state on job_executions (state, scheduled_for);
create index job_executions_by_job on job_executions (job_id, created_at desc);
