"""Queries of the master's settings: one row per key (sql/0013), its value as JSON."""

from __future__ import annotations

from typing import Any

import asyncpg


async def all_settings(db) -> list[asyncpg.Record]:
    return await db.fetch("select key, value, updated_at, updated_by from settings order by key")


async def put(db, values: dict[str, Any], by: str | None) -> None:
    """Set the given keys (a value of None removes the key: its default applies again), in one transaction."""
    async with db.acquire() as conn, conn.transaction():
        for key, value in values.items():
            if value is None:
                await conn.execute("delete from settings where key = $1", key)
            else:
                await conn.execute(
                    """
                    insert into settings (key, value, updated_by) values ($1, $2, $3)
                    on conflict (key) do update set value = excluded.value, updated_at = now(),
                                                    updated_by = excluded.updated_by
                    """,
                    key,
                    value,
                    by,
                )
