"""Queries of the boards' live state (sql/0023): the newest values each capability reported, one row per board
and capability.

Layer: storage (asyncpg only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import msgspec


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


# many reports in one statement (a batch of telemetry): one row per (device, capability), already merged in order
_UPSERT_MANY = """
insert into device_state (device_id, capability, state, at)
select r->>0, r->>1, r->2, now() from jsonb_array_elements($1::text::jsonb) r
on conflict (device_id, capability) do update set state = device_state.state || excluded.state, at = excluded.at
returning device_id, capability, state, at
"""


async def record_many(db, reports: list[tuple[str, str, dict[str, Any]]]) -> dict[tuple[str, str], State]:
    """Store (device id, capability, values) reports, later ones merged over earlier ones of the same capability
    as `record` one after the other would; {(device id, capability): its whole state as it is now}."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for device_id, capability, values in reports:
        if (known := merged.get((device_id, capability))) is None:
            merged[device_id, capability] = dict(values)
        else:
            known.update(values)
    rows = await db.fetch(_UPSERT_MANY, msgspec.json.encode([[d, c, v] for (d, c), v in merged.items()]).decode())
    return {(r["device_id"], r["capability"]): State(r["capability"], r["state"], r["at"]) for r in rows}


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
