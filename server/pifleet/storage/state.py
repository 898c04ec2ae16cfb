"""Queries of the boards' live state (sql/0023): the newest values each capability reported, one row per board
and capability.

Layer: storage (asyncpg only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple


class State(NamedTuple):
    capability: str
    values: dict[str, Any]
    at: datetime


# a report replaces the values it names and keeps the others (a partial report never forgets the rest)
_UPSERT = """
insert into device_state (device_id, capability, state, at) values ($1, $2, $3, now())
on conflict (device_id, capability) do update set state = device_state.state || excluded.state, at = excluded.at
returning state, at
"""


async def record(db, device_id: str, capability: str, values: dict[str, Any]) -> State:
    """Store a report; the capability's whole state as it is now."""
    row = await db.fetchrow(_UPSERT, device_id, capability, values)
    return State(capability, row["state"], row["at"])


async def of_device(db, device_id: str) -> list[State]:
    """Every capability's newest state, by capability name."""
    rows = await db.fetch(
        "select capability, state, at from device_state where device_id = $1 order by capability", device_id
    )
    return [State(r["capability"], r["state"], r["at"]) for r in rows]


# what the module each capability of the device runs declares: the stored version the board reports
# (device_capabilities.module is NAME_ and the version's first 10 hex digits), else the newest of that name
_DECLARED = """
select c.name, m.declared from device_capabilities c
left join lateral (
    select declared from modules
    where name = c.name
    order by (c.module is not distinct from name || '_' || left(sha256, 10)) desc, created_at desc
    limit 1) m on true
where c.device_id = $1
"""


async def declared(db, device_id: str) -> dict[str, dict[str, Any]]:
    """{capability: its module's declarations} of the device's capabilities ({} where no module is stored)."""
    return {r["name"]: r["declared"] or {} for r in await db.fetch(_DECLARED, device_id)}
