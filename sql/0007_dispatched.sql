-- pifleet 0007: a run claimed by a worker but not yet sent (waiting for its device) is "dispatched".

alter table job_executions drop constraint job_executions_state_check;
alter table job_executions add constraint job_executions_state_check check (state in
    ('scheduled', 'dispatched', 'running', 'succeeded', 'failed', 'timed_out', 'skipped', 'missed', 'cancelled'));
