"""Queries of the adoption aggregate: boards waiting for a person to confirm their code."""

from __future__ import annotations

import asyncpg

from ..model import AdoptionRead

_COLUMNS = (
    "id, mac, chip, address, port, firmware, mpy, agent_version, state, attempts, device_id, first_seen, "
    "last_seen, decided_at, delivered_at"
)


def _read(row: asyncpg.Record) -> AdoptionRead:
    return AdoptionRead(**{k: row[k] for k in _COLUMNS.split(", ")})


async def list_adoptions(
    db, states: tuple[str, ...] = ("waiting", "adopted", "rejected", "locked")
) -> list[AdoptionRead]:
    rows = await db.fetch(
        f"select {_COLUMNS} from adoptions where state = any($1::text[]) order by last_seen desc", list(states)
    )
    return [_read(r) for r in rows]


async def get(db, adoption_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    return await db.fetchrow(
        "select * from adoptions where id = $1" + (" for update" if for_update else ""), adoption_id
    )


async def get_by_mac(db, mac: str) -> asyncpg.Record | None:
    return await db.fetchrow("select * from adoptions where mac = $1", mac)


async def count_waiting(db, fresh_s: int) -> int:
    return await db.fetchval(
        "select count(*) from adoptions where state = 'waiting' and last_seen > now() - make_interval(secs => $1)",
        fresh_s,
    )


async def start(
    db,
    *,
    mac: str,
    chip: str,
    nonce: bytes,
    proof: bytes,
    address: str,
    port: int,
    firmware: str | None,
    mpy: int | None,
    agent_version: str | None,
) -> asyncpg.Record:
    """A board announced a new nonce: (re)start waiting for its code. A rejected MAC stays rejected."""
    return await db.fetchrow(
        """
        insert into adoptions (mac, chip, nonce, proof, address, port, firmware, mpy, agent_version)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        on conflict (mac) do update set
            chip = excluded.chip, nonce = excluded.nonce, proof = excluded.proof, address = excluded.address,
            port = excluded.port, firmware = excluded.firmware, mpy = excluded.mpy,
            agent_version = excluded.agent_version, last_seen = now(), attempts = 0,
            state = case when adoptions.state = 'rejected' then 'rejected' else 'waiting' end,
            device_id = case when adoptions.state = 'rejected' then adoptions.device_id else null end,
            key = null,
            decided_at = case when adoptions.state = 'rejected' then adoptions.decided_at else null end,
            delivered_at = null
        returning *
        """,
        mac,
        chip,
        nonce,
        proof,
        address,
        port,
        firmware,
        mpy,
        agent_version,
    )


async def seen(db, adoption_id: int, address: str, port: int, delivered: bool) -> None:
    await db.execute(
        "update adoptions set last_seen = now(), address = $2, port = $3, "
        "delivered_at = case when $4 then now() else delivered_at end where id = $1",
        adoption_id,
        address,
        port,
        delivered,
    )


async def wrong_code(db, adoption_id: int, max_attempts: int) -> asyncpg.Record:
    return await db.fetchrow(
        "update adoptions set attempts = attempts + 1, "
        "state = case when attempts + 1 >= $2 then 'locked' else state end, "
        "decided_at = case when attempts + 1 >= $2 then now() else decided_at end "
        "where id = $1 returning *",
        adoption_id,
        max_attempts,
    )


async def decide(
    db, adoption_id: int, state: str, device_id: str | None = None, key: bytes | None = None
) -> asyncpg.Record:
    return await db.fetchrow(
        "update adoptions set state = $2, device_id = $3, key = $4, decided_at = now() where id = $1 returning *",
        adoption_id,
        state,
        device_id,
        key,
    )


async def device_identity(db, device_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "select d.id, d.name, d.role, s.secret, s.oscore_id from devices d "
        "join device_secrets s on s.device_id = d.id where d.id = $1",
        device_id,
    )
