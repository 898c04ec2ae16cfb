-- pifleet 0013: commands sent at once by a person or a script (executions without a job), and the master's
-- household settings (location for sun triggers, time zone).

-- a command is recorded like a job's run: same states, result, error; it has no job, and says who sent it
alter table job_executions alter column job_id drop not null;
alter table job_executions add column source text not null default 'job'
    check (source in ('job', 'person', 'token'));
alter table job_executions add column actor text;   -- the person's or the API token's name (commands only)
alter table job_executions add constraint job_executions_job_or_command
    check ((job_id is not null) = (source = 'job'));

create table settings (
    key         text primary key,                  -- pifleet.settings.KEYS: latitude, longitude, timezone
    value       jsonb not null,
    updated_at  timestamptz not null default now(),
    updated_by  text                               -- who set it (a person's or a token's name)
);
