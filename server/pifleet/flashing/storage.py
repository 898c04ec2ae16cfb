"""Queries of the flashing aggregate: the firmware catalog and flash jobs (plain async functions over a pool or
connection, as in pifleet.storage). They live beside the flashing service because they return its Structs
(flashing/model.py): storage/ imports no service package. The identity a flash gives a board (device, MAC,
secret) is recorded with the device's queries (storage/devices.py), as adoption's is."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from .model import FirmwareRead, FirmwareRolloutBoard, FirmwareRolloutRead, FlashJobRead


def _firmware(row: asyncpg.Record) -> FirmwareRead:
    return FirmwareRead(
        id=row["id"],
        chip=row["chip"],
        version=row["version"],
        sha256=row["sha256"],
        size=row["size"],
        filename=row["filename"],
        offset=row["offset_"],
        project=row["project"],
        source=row["source"],
        added_at=row["added_at"],
        ota=row["ota"],
    )


async def insert_firmware(
    db,
    *,
    chip: str,
    version: str,
    sha256: str,
    size: int,
    filename: str,
    offset: int,
    project: str,
    source: str,
    ota: bool = False,
) -> tuple[FirmwareRead, bool]:
    """Add an image; an image with the same SHA-256 is already there: return it (created = False)."""
    row = await db.fetchrow(
        """
        insert into firmware (chip, version, sha256, size, filename, offset_, project, source, ota)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (sha256) do nothing returning *
        """,
        chip,
        version,
        sha256,
        size,
        filename,
        offset,
        project,
        source,
        ota,
    )
    if row is not None:
        return _firmware(row), True
    return _firmware(await db.fetchrow("select * from firmware where sha256 = $1", sha256)), False


async def list_firmware(db) -> list[FirmwareRead]:
    return [_firmware(r) for r in await db.fetch("select * from firmware order by chip, added_at desc, id desc")]


async def get_firmware(db, firmware_id: int) -> FirmwareRead | None:
    row = await db.fetchrow("select * from firmware where id = $1", firmware_id)
    return _firmware(row) if row else None


async def firmware_for_chip(db, chip: str) -> list[FirmwareRead]:
    rows = await db.fetch("select * from firmware where chip = $1 order by added_at desc, id desc", chip)
    return [_firmware(r) for r in rows]


# ---- flash jobs ------------------------------------------------------------------------------------------------


def _job(row: asyncpg.Record) -> FlashJobRead:
    return FlashJobRead(
        id=str(row["id"]),
        port=row["port"],
        name=row["name"],
        role=row["role"],
        firmware=row["firmware_id"],
        factory_reset=row["factory_reset"],
        device_id=row["device_id"],
        mac=row["mac"],
        chip=row["chip"],
        state=row["state"],
        progress=row["progress"],
        bytes=row["bytes"],
        bytes_sent=row["bytes_sent"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def create_job(
    db, *, port: str, name: str, role: str, firmware_id: int | None, factory_reset: bool
) -> FlashJobRead:
    row = await db.fetchrow(
        """
        insert into flash_jobs (id, port, name, role, firmware_id, factory_reset, state)
        values ($1, $2, $3, $4, $5, $6, 'queued') returning *
        """,
        uuid.uuid4(),
        port,
        name,
        role,
        firmware_id,
        factory_reset,
    )
    return _job(row)


_JOB_FIELDS = {"state", "progress", "bytes", "bytes_sent", "error", "device_id", "mac", "chip", "firmware_id"}


async def update_job(db, job_id: str, **fields: Any) -> bool:
    """Set some columns of a flash job; a state of writing/done/failed also stamps started_at/finished_at.

    A finished job (done, failed) is final: progress notes from the flashing thread travel through the event
    loop on their own and one may arrive after the outcome was recorded; it changes nothing then. Returns
    whether the row was changed."""
    unknown = set(fields) - _JOB_FIELDS
    if unknown:
        raise ValueError(f"unknown flash job fields {unknown}")
    sets = [f"{key} = ${n}" for n, key in enumerate(fields, start=2)]
    state = fields.get("state")
    if state == "probing":
        sets.append("started_at = now()")
    if state in ("done", "failed"):
        sets.append("finished_at = now()")
    status = await db.execute(
        f"update flash_jobs set {', '.join(sets)} where id = $1 and state not in ('done', 'failed')",
        uuid.UUID(job_id),
        *fields.values(),
    )
    return status != "UPDATE 0"


async def get_job(db, job_id: str) -> FlashJobRead | None:
    try:
        key = uuid.UUID(job_id)
    except ValueError:
        return None
    row = await db.fetchrow("select * from flash_jobs where id = $1", key)
    return _job(row) if row else None


async def list_jobs(db, limit: int = 20) -> list[FlashJobRead]:
    return [_job(r) for r in await db.fetch("select * from flash_jobs order by created_at desc limit $1", limit)]


async def fail_unfinished(db) -> int:
    """At start-up: flash jobs a previous master left running can never finish (its thread is gone)."""
    result = await db.execute(
        "update flash_jobs set state = 'failed', error = 'the master stopped during this flash', "
        "finished_at = now() where state not in ('done', 'failed')"
    )
    return int(result.split()[-1])


# -- firmware rollouts (sql/0020) ----------------------------------------------------------------------------------


async def insert_firmware_rollout(db, firmware_id: int, target: dict, device_ids: list[str], by: str | None) -> int:
    async with db.acquire() as conn, conn.transaction():
        rollout_id = await conn.fetchval(
            "insert into firmware_rollouts (firmware_id, target, created_by) values ($1, $2, $3) returning id",
            firmware_id,
            target,
            by,
        )
        await conn.executemany(
            "insert into firmware_rollout_boards (rollout_id, device_id, position) values ($1, $2, $3)",
            [(rollout_id, d, n) for n, d in enumerate(device_ids)],
        )
    return rollout_id


async def running_firmware_rollouts(db) -> list[int]:
    """The rollouts still running (at start: those a master left behind), oldest first."""
    return [r["id"] for r in await db.fetch("select id from firmware_rollouts where state = 'running' order by id")]


async def recent_firmware_rollouts(db, limit: int) -> list[int]:
    """The newest rollouts first: the running ones, then the finished ones."""
    rows = await db.fetch(
        "select id from firmware_rollouts order by state = 'running' desc, id desc limit $1",
        limit,
    )
    return [r["id"] for r in rows]


async def devices_in_running_rollouts(db, device_ids: list[str]) -> list[str]:
    rows = await db.fetch(
        "select b.device_id from firmware_rollout_boards b join firmware_rollouts r on r.id = b.rollout_id "
        "where r.state = 'running' and b.device_id = any($1::text[])",
        device_ids,
    )
    return [r["device_id"] for r in rows]


async def update_firmware_rollout_board(db, rollout_id: int, device_id: str, **fields) -> None:
    """Change a board's row while it is not final (done, rolled_back and failed rows are never touched again)."""
    names = [k for k in fields if k in ("state", "progress", "reason", "from_version", "to_version")]
    sets = ", ".join(f"{k} = ${n + 3}" for n, k in enumerate(names))
    await db.execute(
        f"update firmware_rollout_boards set {sets}, updated_at = now() where rollout_id = $1 and device_id = $2 "
        "and state not in ('done', 'rolled_back', 'failed')",
        rollout_id,
        device_id,
        *[fields[k] for k in names],
    )


async def finish_firmware_rollout(db, rollout_id: int, state: str, reason: str | None) -> None:
    await db.execute(
        "update firmware_rollouts set state = $2, reason = $3, finished_at = now() where id = $1 and state = 'running'",
        rollout_id,
        state,
        reason,
    )


async def get_firmware_rollout(db, rollout_id: int) -> FirmwareRolloutRead | None:
    row = await db.fetchrow(
        "select r.*, f.version from firmware_rollouts r join firmware f on f.id = r.firmware_id where r.id = $1",
        rollout_id,
    )
    if row is None:
        return None
    boards = await db.fetch(
        "select b.*, d.name from firmware_rollout_boards b join devices d on d.id = b.device_id "
        "where b.rollout_id = $1 order by b.position",
        rollout_id,
    )
    return FirmwareRolloutRead(
        id=row["id"],
        firmware=row["firmware_id"],
        version=row["version"],
        target=row["target"],
        state=row["state"],
        reason=row["reason"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        boards=[
            FirmwareRolloutBoard(
                device=b["name"],
                device_id=b["device_id"],
                state=b["state"],
                progress=b["progress"],
                reason=b["reason"],
                from_version=b["from_version"],
                to_version=b["to_version"],
            )
            for b in boards
        ],
    )
