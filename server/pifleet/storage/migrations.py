"""Numbered SQL migrations from sql/, applied at start-up, each once, in order, recorded in schema_migrations.
sql/ is found by pifleet.resources (the installed package, else the source checkout).

Idempotent and safe against two masters starting at once: an advisory lock serialises the runner.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg

from .. import resources

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x70696665  # "pife"


def available(sql_dir: Path | None = None) -> list[tuple[int, str, Path]]:
    """The migrations in sql_dir (default: the shipped sql/), in order: (version, name, path)."""
    found = []
    for path in sorted((sql_dir or resources.sql()).glob("*.sql")):
        if m := _NAME.match(path.name):
            found.append((int(m.group(1)), m.group(2), path))
    return found


async def migrate(pool: asyncpg.Pool, sql_dir: Path | None = None) -> list[int]:
    """Apply what is missing; return the versions applied now."""
    applied_now = []
    async with pool.acquire() as conn:
        await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                "create table if not exists schema_migrations ("
                " version integer primary key, name text not null,"
                " applied_at timestamptz not null default now())"
            )
            done = {r["version"] for r in await conn.fetch("select version from schema_migrations")}
            for version, name, path in available(sql_dir):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("insert into schema_migrations (version, name) values ($1, $2)", version, name)
                log.info("applied migration %04d_%s", version, name)
                applied_now.append(version)
        finally:
            await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
