-- pifleet 0006: named groups of devices, and jobs whose target is a role or group (one execution per device).

create table device_groups (
    name        text primary key,
    devices     text[] not null default '{}',     -- device names
    created_at  timestamptz not null default now()
);

-- a role/group run fans out into one step-0 execution per device under the same parent
drop index job_executions_one_follow_up;
create unique index job_executions_one_child
    on job_executions (parent_id, step, coalesce(device_id, '')) where parent_id is not null;
