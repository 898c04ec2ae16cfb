-- Boards that recover by themselves and keep their schedule while the master is away (issue 14).

-- A board in safe mode (three boots in a row failed before its agent was up: docs/agent.md, "Safe mode") says why
-- in its registration; null when it runs normally. Each registration sets it anew.
alter table devices add column safe_mode text;

-- Who carried a run out: the master (it sent the command) or the board by itself, from the plan the master gave it,
-- while the master was away (docs/jobs.md, "When the master is away").
alter table job_executions add column ran_by text not null default 'master' check (ran_by in ('master', 'board'));
