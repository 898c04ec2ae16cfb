"""Queries of the job aggregate for many jobs at once (`PUT /api/jobs` with a list): one statement per step.

Each step takes its rows as one jsonb array, so 10,000 jobs are three round trips, not 30,000. The caller runs
them in one transaction (all or nothing).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ..model import JobSpec
from .jobs import root_id


async def upsert_jobs(db, specs: list[JobSpec]) -> list[asyncpg.Record]:
    """Create or replace jobs by name (the names must differ); rows in the order given, with `created`."""
    return await db.fetch(
        """
        with input as (select doc, i from jsonb_array_elements($1::text::jsonb) with ordinality as e(doc, i)),
        saved as (
            insert into jobs (name, spec, enabled)
            select doc->>'name', doc, coalesce((doc->>'enabled')::boolean, true) from input order by i
            on conflict (name) do update set spec = excluded.spec, enabled = excluded.enabled, updated_at = now()
            returning id, name, enabled, paused, created_at, updated_at, (xmax = 0) as created
        )
        select saved.* from saved join input on input.doc->>'name' = saved.name order by input.i
        """,
        msgspec.json.encode(specs).decode(),  # one encode for all (text: the jsonb codec would encode it again)
    )


async def drop_pending_roots(db, job_ids: list[int]) -> int:
    """Forget the planned own runs of these jobs (their triggers may have changed)."""
    status = await db.execute(
        "delete from job_executions where job_id = any($1::bigint[]) and parent_id is null and state = 'scheduled'",
        job_ids,
    )
    return int(status.split()[-1])


class RootRun(msgspec.Struct):
    """A job's own next run, as `insert_roots` takes it."""

    job_id: int
    device_id: str | None
    capability: str
    command: str
    params: Any  # the action's parameters as the job spec holds them
    at: datetime
    max_attempts: int
    id: uuid.UUID | None = None  # root_id(job_id, at): a board's plan knows it before the run is planned

    def __post_init__(self) -> None:
        if self.id is None:
            self.id = root_id(self.job_id, self.at)


async def insert_roots(db, runs: list[RootRun]) -> list[asyncpg.Record]:
    """Plan the runs (state scheduled); returns (id, scheduled_for) of those not planned already."""
    if not runs:
        return []
    return await db.fetch(
        """
        insert into job_executions (id, job_id, device_id, capability, command, params, state, scheduled_for,
                                    max_attempts)
        select (r->>'id')::uuid, (r->>'job_id')::bigint, r->>'device_id', r->>'capability', r->>'command',
               r->'params', 'scheduled', (r->>'at')::timestamptz, (r->>'max_attempts')::integer
        from jsonb_array_elements($1::text::jsonb) r
        on conflict (job_id, scheduled_for) where parent_id is null do nothing
        returning id, attempt, scheduled_for
        """,
        msgspec.json.encode(runs).decode(),
    )


async def active_jobs(db) -> list[asyncpg.Record]:
    """Enabled jobs not paused, lightly: id, created_at, updated_at (the spec's version)."""
    return await db.fetch("select id, created_at, updated_at from jobs where enabled and not paused")


async def spec_texts(db, job_ids: list[int]) -> list[asyncpg.Record]:
    """id, updated_at and the spec as JSON text (the caller decodes it straight into a JobSpec)."""
    return await db.fetch("select id, updated_at, spec::text as spec from jobs where id = any($1::bigint[])", job_ids)


async def planned_runs(db, until: datetime, device: str | None = None, limit: int = 10000) -> list[asyncpg.Record]:
    """Scheduled runs on a device until `until`, soonest first: at, job, device (name), capability, command,
    params, follow_up."""
    return await db.fetch(
        """
        select e.scheduled_for as at, j.name as job, d.name as device, e.capability, e.command, e.params,
               e.parent_id is not null as follow_up
        from job_executions e join jobs j on j.id = e.job_id join devices d on d.id = e.device_id
        where e.state = 'scheduled' and e.scheduled_for <= $1 and ($2::text is null or d.name = $2)
        order by e.scheduled_for limit $3
        """,
        until,
        device,
        limit,
    )


async def claim_many(db, execution_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Claim a role/group run's new device runs together (scheduled, no attempt yet → dispatched), in the order
    given; one that is not there to claim any more, or is another site's (sql/0018), is left out."""
    rows = await db.fetch(
        """
        update job_executions set state = 'dispatched', attempt = attempt + 1, started_at = now(), error = null
        where id = any($1::uuid[]) and state = 'scheduled' and attempt = 0 and (site is null or site = pifleet_site())
        returning *
        """,
        execution_ids,
    )
    order = {execution_id: i for i, execution_id in enumerate(execution_ids)}
    return sorted(rows, key=lambda row: order[row["id"]])


async def mark_running(db, execution_ids: list[uuid.UUID]) -> None:
    """Their commands are on their way (dispatched → running)."""
    if execution_ids:
        await db.execute(
            "update job_executions set state = 'running' where id = any($1::uuid[]) and state = 'dispatched'",
            execution_ids,
        )
