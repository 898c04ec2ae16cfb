"""Queries of the fleet's Wi-Fi: each board's network as it last said (sql/0021). The networks themselves are a
settings row ('wifi', storage/settings.py)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from .devices import _ONLINE


async def boards(db) -> list[asyncpg.Record]:
    """Every board (ESP32s: a process target has no Wi-Fi of ours) with its Wi-Fi row, by name."""
    return await db.fetch(
        f"""
        select d.id, d.name, d.address, d.port, d.mac,
               {_ONLINE} as online,
               w.ssid, w.took_new, coalesce(w.state, 'unknown') as state, w.error, w.pushed_at, w.updated_at
        from devices d left join board_wifi w on w.device_id = d.id
        where d.kind <> 'pifleet.process'
        order by d.name
        """
    )


async def record(
    db,
    device_id: str,
    state: str,
    *,
    ssid: str | None = None,
    took_new: bool | None = None,
    error: str | None = None,
    pushed_at: datetime | None = None,
) -> None:
    """Write what a board said (or that it could not be reached); ssid and pushed_at keep their old value when
    None is given."""
    await db.execute(
        """
        insert into board_wifi (device_id, ssid, took_new, state, error, pushed_at) values ($1, $2, $3, $4, $5, $6)
        on conflict (device_id) do update set ssid = coalesce(excluded.ssid, board_wifi.ssid),
            took_new = excluded.took_new, state = excluded.state, error = excluded.error,
            pushed_at = coalesce(excluded.pushed_at, board_wifi.pushed_at), updated_at = now()
        """,
        device_id,
        ssid,
        took_new,
        state,
        error,
        pushed_at,
    )


async def secret(db, device_id: str) -> bytes | None:
    return await db.fetchval("select secret from device_secrets where device_id = $1", device_id)
