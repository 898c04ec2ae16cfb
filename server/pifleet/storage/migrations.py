"""Numbered SQL migrations from sql/, applied at start-up, each once, in order, recorded in schema_migrations.
sql/ is found by pifleet.resources (the installed package, else the source checkout).

Idempotent and safe against two masters starting at once: an advisory lock serialises the runner. Each row
records the pifleet version that applied it, so a master refuses a database migrated by a newer pifleet (one
that knows migrations this one does not) and names both versions, instead of running on a schema it cannot read.
"""

from __future__ import annotations

import logging
import re
from importlib import metadata
from pathlib import Path

import asyncpg

from .. import resources

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x70696665  # "pife"


class SchemaTooNewError(RuntimeError):
    """The database holds migrations this pifleet does not know: a newer pifleet migrated it."""


def package_version() -> str:
    """This pifleet's version, as installed."""
    try:
        return metadata.version("pifleet")
    except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown"


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
            await conn.execute("alter table schema_migrations add column if not exists pifleet_version text")
            done = {r["version"] for r in await conn.fetch("select version from schema_migrations")}
            known = available(sql_dir)
            await _refuse_newer(conn, max(done, default=0), max((v for v, _, _ in known), default=0))
            for version, name, path in known:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "insert into schema_migrations (version, name, pifleet_version) values ($1, $2, $3)",
                        version,
                        name,
                        package_version(),
                    )
                log.info("applied migration %04d_%s", version, name)
                applied_now.append(version)
        finally:
            await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _refuse_newer(conn: asyncpg.Connection, newest: int, known: int) -> None:
    if newest <= known:
        return
    by = await conn.fetchval("select pifleet_version from schema_migrations where version = $1", newest)
    newer = f"pifleet {by}" if by else "a newer pifleet"
    raise SchemaTooNewError(
        f"this database was migrated by {newer} (schema {newest:04d}); this is pifleet {package_version()}, which "
        f"knows schema {known:04d} at most: upgrade to {newer.removeprefix('a ')} (or later), or restore a backup "
        "made by this version"
    )
