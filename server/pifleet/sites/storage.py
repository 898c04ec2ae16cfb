"""Queries of the sites: heartbeats, who owns a board or a run, relayed calls. Plain async functions (asyncpg)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from . import STALE_S, channel


async def heartbeat(db, site: str, *, http_url: str, coap: str, host: str, pid: int, starting: bool = False) -> None:
    await db.execute(
        """
        insert into sites (name, http_url, coap, host, pid) values ($1, $2, $3, $4, $5)
        on conflict (name) do update set heartbeat_at = now(), stopped_at = null, http_url = excluded.http_url,
            coap = excluded.coap, host = excluded.host, pid = excluded.pid,
            started_at = case when $6 then now() else sites.started_at end
        """,
        site,
        http_url,
        coap,
        host,
        pid,
        starting,
    )


async def stopped(db, site: str) -> None:
    await db.execute("update sites set stopped_at = now() where name = $1", site)


async def list_sites(db) -> list[asyncpg.Record]:
    """Every site with `reachable`: heartbeated within STALE_S and not stopped."""
    return await db.fetch(
        "select *, (stopped_at is null and heartbeat_at > now() - make_interval(secs => $1)) as reachable"
        " from sites order by name",
        STALE_S,
    )


async def reachable(db, site: str) -> bool:
    """Whether a site's master is there (a site never seen, such as `default` before its first start: no)."""
    return bool(
        await db.fetchval(
            "select stopped_at is null and heartbeat_at > now() - make_interval(secs => $2) from sites where name = $1",
            site,
            STALE_S,
        )
    )


async def device_site(db, device_id: str) -> str | None:
    return await db.fetchval("select site from devices where id = $1", device_id)


async def site_at(db, address: str, port: int) -> str | None:
    """The site of the board registered at this address (the newest, should two rows hold it)."""
    return await db.fetchval(
        "select site from devices where address = $1 and port = $2 order by last_seen desc nulls last limit 1",
        address,
        port,
    )


async def new_call(db, to_site: str, method: str, args: dict[str, Any], data: bytes | None) -> uuid.UUID:
    call_id = uuid.uuid4()
    await db.execute(
        "insert into site_calls (id, from_site, to_site, method, args, data)"
        " values ($1, pifleet_site(), $2, $3, $4, $5)",
        call_id,
        to_site,
        method,
        args,
        data,
    )
    return call_id


async def call_for(db, call_id: uuid.UUID, site: str) -> asyncpg.Record | None:
    """A call addressed to `site`, not answered yet."""
    return await db.fetchrow(
        "select * from site_calls where id = $1 and to_site = $2 and answered_at is null", call_id, site
    )


async def answer_call(db, call_id: uuid.UUID, answer: dict[str, Any]) -> str | None:
    """Record the answer once; returns the caller's site to notify (None: answered already, or gone)."""
    return await db.fetchval(
        "update site_calls set answer = $2, answered_at = now() where id = $1 and answered_at is null"
        " returning from_site",
        call_id,
        answer,
    )


async def take_answer(db, call_id: uuid.UUID) -> dict[str, Any] | None:
    """The answer of a call, if there is one (the row goes: nobody reads it twice)."""
    return await db.fetchval(
        "delete from site_calls where id = $1 and answered_at is not null returning answer", call_id
    )


async def forget_call(db, call_id: uuid.UUID) -> None:
    await db.execute("delete from site_calls where id = $1", call_id)


async def prune_calls(db, older_than_s: float = 3600) -> None:
    """Calls nobody came back for (a caller that stopped while it waited)."""
    await db.execute("delete from site_calls where created_at < now() - make_interval(secs => $1)", older_than_s)


async def notify(db, site: str, payload: str) -> None:
    await db.execute("select pg_notify($1, $2)", channel(site), payload)
