-- pifleet 0004: the job engine's fuller life cycle: more execution states, pausing jobs.

alter table job_executions drop constraint job_executions_state_check;
alter table job_executions add constraint job_executions_state_check check (state in
    ('scheduled', 'running', 'succeeded', 'failed', 'timed_out', 'skipped', 'missed', 'cancelled'));

-- a paused job keeps its schedule; its runs are recorded as skipped until it is resumed
alter table jobs add column paused boolean not null default false;

create index job_executions_by_device on job_executions (device_id, created_at desc);
