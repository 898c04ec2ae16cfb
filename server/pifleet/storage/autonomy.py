"""Queries of the boards' own runs while the master is away (jobs/autonomy.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg


async def scheduled_roots(db, job_ids: list[int]) -> list[asyncpg.Record]:
    """The planned own runs (not follow-ups) of these jobs: id, job_id, scheduled_for."""
    return await db.fetch(
        "select id, job_id, scheduled_for from job_executions"
        " where job_id = any($1::bigint[]) and parent_id is null and state = 'scheduled'",
        job_ids,
    )


async def unsent_roots(db, device_id: str, due_by: datetime) -> list[asyncpg.Record]:
    """The device's own runs due by `due_by` that no master has sent yet (no attempt made): after a master's start
    they wait for its alarm, while the board may run one by itself."""
    return await db.fetch(
        "select * from job_executions where device_id = $1 and parent_id is null and state = 'scheduled'"
        " and attempt = 0 and scheduled_for <= $2",
        device_id,
        due_by,
    )


async def execution_row(db, execution_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("select * from job_executions where id = $1", execution_id)


async def mark_ran_by_board(db, execution_id: uuid.UUID, at: datetime) -> None:
    """The board ran it by itself at `at` (its one attempt), whatever state the row is in. A run still `scheduled`
    (its first attempt not made yet, or waiting for its next after one that did not get through) is under way from
    now: its outcome can be recorded (a finished row's is final, a scheduled one's was not recorded at all), and its
    next attempt finds nothing to claim (chaos.py: such a report was dropped, the last retry met a power cut, and a
    run the board did ended `failed`, without its follow-up)."""
    await db.execute(
        "update job_executions set ran_by = 'board', started_at = coalesce(started_at, $2),"
        " attempt = greatest(attempt, 1), state = case when state = 'scheduled' then 'dispatched' else state end"
        " where id = $1",
        execution_id,
        at,
    )


async def live(db, execution_id: uuid.UUID) -> bool:
    """Whether the run has not finished yet."""
    return bool(
        await db.fetchval(
            "select true from job_executions where id = $1 and state in ('scheduled', 'dispatched', 'running')",
            execution_id,
        )
    )
