"""Queries of the flashing aggregate: the firmware catalog and flash jobs (plain async functions over a pool or
connection, as in pifleet.storage). They live beside the flashing service because they return its Structs
(flashing/model.py): storage/ imports no service package. The identity a flash gives a board (device, MAC,
secret) is recorded with the device's queries (storage/devices.py), as adoption's is."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from .model import FirmwareRead, FlashJobRead


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
