"""Queries of the job aggregate: jobs (their specs) and job executions (every run, with its state)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import msgspec

from ..model import ExecutionRead, JobRead, JobSpec

_NEXT_RUN = "(select min(e.scheduled_for) from job_executions e where e.job_id = j.id and e.state = 'scheduled')"


def _job(row: asyncpg.Record) -> JobRead:
    return JobRead(
        id=row["id"],
        name=row["name"],
        enabled=row["enabled"],
        paused=row["paused"],
        spec=msgspec.convert(row["spec"], JobSpec),
        next_run=row["next_run"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def upsert_job(db, spec: JobSpec) -> tuple[JobRead, bool]:
    """Create or replace a job by name; returns it and whether it was created."""
    row = await db.fetchrow(
        """
        with j as (
            insert into jobs (name, spec, enabled) values ($1, $2, $3)
            on conflict (name) do update set spec = excluded.spec, enabled = excluded.enabled, updated_at = now()
            returning *, (xmax = 0) as created
        ) select j.*, null::timestamptz as next_run from j
        """,
        spec.name,
        msgspec.to_builtins(spec),
        spec.enabled,
    )
    return _job(row), row["created"]


async def get_job(db, name: str) -> JobRead | None:
    row = await db.fetchrow(f"select j.*, {_NEXT_RUN} as next_run from jobs j where j.name = $1", name)
    return _job(row) if row else None


async def get_job_by_id(db, job_id: int) -> JobRead | None:
    row = await db.fetchrow(f"select j.*, {_NEXT_RUN} as next_run from jobs j where j.id = $1", job_id)
    return _job(row) if row else None


async def list_jobs(db) -> list[JobRead]:
    return [_job(r) for r in await db.fetch(f"select j.*, {_NEXT_RUN} as next_run from jobs j order by j.name")]


async def set_paused(db, name: str, paused: bool) -> bool:
    return bool(
        await db.fetchval(
            "update jobs set paused = $2, updated_at = now() where name = $1 returning true", name, paused
        )
    )


async def threshold_jobs(db) -> list[JobRead]:
    rows = await db.fetch(
        f"select j.*, {_NEXT_RUN} as next_run from jobs j"
        " where j.enabled and not j.paused and j.spec->'trigger'->>'type' = 'threshold' order by j.id"
    )
    return [_job(r) for r in rows]


async def jobs_after(db, name: str) -> list[JobRead]:
    """Jobs whose trigger is `after` the named job."""
    rows = await db.fetch(
        f"select j.*, {_NEXT_RUN} as next_run from jobs j"
        " where j.spec->'trigger'->>'type' = 'after' and j.spec->'trigger'->>'job' = $1 order by j.id",
        name,
    )
    return [_job(r) for r in rows]


async def delete_job(db, name: str) -> bool:
    return await db.fetchval("delete from jobs where name = $1 returning true", name) or False


async def enabled_job_ids(db) -> list[int]:
    return [r["id"] for r in await db.fetch("select id from jobs where enabled order by id")]


# ---- executions ----------------------------------------------------------------------------------------------

_EXEC_SELECT = """
select e.*, j.name as job_name, d.name as device_name
from job_executions e left join jobs j on j.id = e.job_id left join devices d on d.id = e.device_id
"""


_ROOT_IDS = uuid.UUID("5f0b6c0e-7d1c-4b8e-9a51-0c14a2f3e9d7")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def root_id(job_id: int, at: datetime) -> uuid.UUID:
    """The id of a job's own run at `at`, known before the run is planned: a board's plan names its runs by it
    (jobs/autonomy.py), so the run the board did and the one the master plans are one execution."""
    return uuid.uuid5(_ROOT_IDS, f"{job_id}@{(at - _EPOCH) // timedelta(microseconds=1)}")


def _execution(row: asyncpg.Record) -> ExecutionRead:
    return ExecutionRead(
        id=str(row["id"]),
        job=row["job_name"],
        parent_id=str(row["parent_id"]) if row["parent_id"] else None,
        step=row["step"],
        device=row["device_name"],
        capability=row["capability"],
        command=row["command"],
        params=row["params"],
        state=row["state"],
        scheduled_for=row["scheduled_for"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
        error=row["error"],
        source=row["source"],
        actor=row["actor"],
        ran_by=row["ran_by"],
    )


async def insert_execution(
    db,
    *,
    job_id: int,
    device_id: str | None,
    capability: str,
    command: str,
    params: dict[str, Any],
    scheduled_for: datetime,
    max_attempts: int,
    parent_id: uuid.UUID | None = None,
    step: int = 0,
    state: str = "scheduled",
    error: str | None = None,
) -> uuid.UUID | None:
    """Plan one run (or record one that will not run: state skipped/failed with the reason). Returns its id, or
    None when that run was already planned (same job and time, or same follow-up)."""
    new_id = root_id(job_id, scheduled_for) if parent_id is None and job_id is not None else uuid.uuid4()
    conflict = (
        "(job_id, scheduled_for) where parent_id is null"
        if parent_id is None
        else "(parent_id, step, coalesce(device_id, '')) where parent_id is not null"
    )
    return await db.fetchval(
        f"""
        insert into job_executions (id, job_id, parent_id, step, device_id, capability, command, params,
                                    state, scheduled_for, max_attempts, error,
                                    finished_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $11, $9, $10, $12,
                case when $11 = 'scheduled' then null else now() end)
        on conflict {conflict} do nothing returning id
        """,
        new_id,
        job_id,
        parent_id,
        step,
        device_id,
        capability,
        command,
        params,
        scheduled_for,
        max_attempts,
        state,
        error,
    )


async def insert_command(
    db,
    *,
    device_id: str | None,
    capability: str,
    command: str,
    params: dict[str, Any],
    source: str,
    actor: str,
    parent_id: uuid.UUID | None = None,
) -> asyncpg.Record:
    """Record a command sent at once (no job): running from now, its one attempt under way. A role's or group's
    command is one row without a device, its devices' runs rows under it (parent_id, step 0)."""
    return await db.fetchrow(
        """
        insert into job_executions (id, job_id, parent_id, step, device_id, capability, command, params, state,
                                    scheduled_for, attempt, max_attempts, started_at, source, actor)
        values ($1, null, $2, 0, $3, $4, $5, $6, 'running', now(), 1, 1, now(), $7, $8)
        returning *
        """,
        uuid.uuid4(),
        parent_id,
        device_id,
        capability,
        command,
        params,
        source,
        actor,
    )


async def claim(db, execution_id: uuid.UUID, attempt: int) -> asyncpg.Record | None:
    """Move a scheduled run to dispatched, once: a second delivery of the same task finds nothing to claim. Only
    a run of this master's site (sql/0018), or one without a device, is there for it to claim."""
    return await db.fetchrow(
        """
        update job_executions set state = 'dispatched', attempt = attempt + 1, started_at = now(), error = null
        where id = $1 and state = 'scheduled' and attempt = $2 and (site is null or site = pifleet_site())
        returning *
        """,
        execution_id,
        attempt,
    )


_LIVE = "state in ('dispatched', 'running')"  # a run under way; a finished row is final: nothing updates it


async def finish(db, execution_id: uuid.UUID, state: str, *, result: Any = None, error: str | None = None) -> bool:
    """Record a run's outcome, once; False if it had finished already (then nothing changes)."""
    return bool(
        await db.fetchval(
            "update job_executions set state = $2, finished_at = now(), result = $3, error = $4"
            f" where id = $1 and {_LIVE} returning true",
            execution_id,
            state,
            result,
            error,
        )
    )


async def mark_running(db, execution_id: uuid.UUID) -> None:
    """The command is on its way to the board (after waiting for the device, if it had to)."""
    await db.execute("update job_executions set state = 'running' where id = $1 and state = 'dispatched'", execution_id)


async def set_result(db, execution_id: uuid.UUID, result: Any) -> None:
    await db.execute(f"update job_executions set result = $2 where id = $1 and {_LIVE}", execution_id, result)


async def lock_execution(db, execution_id: uuid.UUID) -> None:
    await db.execute("select 1 from job_executions where id = $1 for update", execution_id)


async def child_states(db, parent_id: uuid.UUID) -> list[str]:
    """States of a role/group run's per-device executions (the caller holds the parent's row lock)."""
    return [
        r["state"]
        for r in await db.fetch("select state from job_executions where parent_id = $1 and step = 0", parent_id)
    ]


async def finish_running(db, execution_id: uuid.UUID, state: str, *, error: str | None = None):
    """Finish a run that is still running (once); returns its row, or None if it had finished already."""
    return await db.fetchrow(
        f"update job_executions set state = $2, finished_at = now(), error = $3 where id = $1 and {_LIVE} returning *",
        execution_id,
        state,
        error,
    )


async def reschedule(db, execution_id: uuid.UUID, when: datetime, error: str) -> bool:
    """Back to scheduled for another attempt, keeping the last error visible; False if it had finished already."""
    return bool(
        await db.fetchval(
            f"update job_executions set state = 'scheduled', scheduled_for = $2, error = $3 where id = $1 and {_LIVE}"
            " returning true",
            execution_id,
            when,
            error,
        )
    )


async def scheduled(db, limit: int = 1000) -> list[asyncpg.Record]:
    return await db.fetch(
        "select id, attempt, scheduled_for from job_executions where state = 'scheduled'"
        " order by scheduled_for limit $1",
        limit,
    )


async def planned_by(db, execution_id: uuid.UUID) -> list[asyncpg.Record]:
    """The run itself if it is scheduled again (a retry), and the runs planned after it that are still scheduled."""
    return await db.fetch(
        "select id, attempt, scheduled_for from job_executions"
        " where (id = $1 or parent_id = $1) and state = 'scheduled'",
        execution_id,
    )


async def interrupted(db) -> list[asyncpg.Record]:
    """Runs that were dispatched or running when the master (of this site: sql/0018) stopped."""
    return await db.fetch(
        "select * from job_executions where state in ('dispatched', 'running')"
        " and (site is null or site = pifleet_site())"
    )


async def has_pending_root(db, job_id: int) -> bool:
    return bool(
        await db.fetchval(
            "select 1 from job_executions where job_id = $1 and parent_id is null and state = 'scheduled' limit 1",
            job_id,
        )
    )


async def drop_pending_roots(db, job_id: int) -> int:
    """Forget the job's planned own runs (its trigger may have changed); their Huey tasks then find nothing."""
    status = await db.execute(
        "delete from job_executions where job_id = $1 and parent_id is null and state = 'scheduled'", job_id
    )
    return int(status.split()[-1])


async def cancel(db, execution_id: uuid.UUID) -> bool:
    """Call off a planned run (its Huey task then finds nothing to claim)."""
    return bool(
        await db.fetchval(
            "update job_executions set state = 'cancelled', finished_at = now(), error = 'cancelled by a person'"
            " where id = $1 and state = 'scheduled' returning true",
            execution_id,
        )
    )


async def get_execution(db, execution_id: uuid.UUID) -> ExecutionRead | None:
    row = await db.fetchrow(_EXEC_SELECT + " where e.id = $1", execution_id)
    return _execution(row) if row else None


async def list_executions(
    db,
    *,
    job: str | None = None,
    state: str | None = None,
    device: str | None = None,
    limit: int = 50,
    offset: int = 0,
    upcoming: bool = False,
) -> list[ExecutionRead]:
    where, args = [], []
    for column, value in (("j.name", job), ("e.state", state), ("d.name", device)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    clause = (" where " + " and ".join(where)) if where else ""
    order = "e.scheduled_for asc" if upcoming else "coalesce(e.finished_at, e.started_at, e.created_at) desc"
    args += [limit, offset]
    rows = await db.fetch(
        _EXEC_SELECT + clause + f" order by {order}, e.id limit ${len(args) - 1} offset ${len(args)}", *args
    )
    return [_execution(r) for r in rows]
