"""Database jobs: run one parameterised SQL statement on a PostgreSQL database the process is configured for.

Layer: role module of a process target (CPython only: asyncpg), loaded by agent/caps.py like any capability.
The statement and its arguments travel separately: `$1, $2 …` in the SQL are bound by the server to the
values in `args`, so an argument can never change the statement. Nothing here formats a value into SQL text.
One statement per command (a prepared statement); the server refuses a second one.

Config (caps.db in config.json, written by `pifleet process start`):
    databases   {NAME: libpq DSN}; "master" is the master's own database when started for it
    max_rows    rows a query returns at most (default 1000); more → "truncated": true
    max_bytes   JSON bytes of a query's rows at most (default _jsonsafe.MAX_BYTES: one CoAP answer, as the
                agent has no block-wise responses yet); rows beyond it are left off → "truncated": true
    timeout_s   per connect and per statement (default 8, below the master's 10 s command timeout)

Answers: a statement PostgreSQL refuses (syntax, unknown table, a wrong argument …) raises ValueError → the
agent answers 4.00 with the server's message; a database that cannot be reached raises DatabaseError → 5.00.
"""

import asyncio
import datetime
import decimal
import json
import uuid

import asyncpg
from caps._jsonsafe import MAX_BYTES, jsonsafe, size

NAME = "db"
VERSION = "1"
# a literal (not one shared dict): the master reads it without running the module
COMMANDS = {
    "query": {
        "sql": {"type": "string"},
        "args": {"type": "list", "required": False},
        "database": {"type": "string", "required": False},
    },
    "execute": {
        "sql": {"type": "string"},
        "args": {"type": "list", "required": False},
        "database": {"type": "string", "required": False},
    },
}
CONFIG = {
    "databases": {"type": "object"},  # {NAME: libpq DSN}
    "max_rows": {"type": "integer", "min": 1, "max": 100000, "required": False, "default": 1000},
    "max_bytes": {"type": "integer", "min": 256, "max": 65536, "unit": "B", "required": False, "default": 3072},
    "timeout_s": {"type": "number", "min": 0.5, "max": 60, "unit": "s", "required": False, "default": 8},
}

_MAX_ROWS = 1000
_TIMEOUT_S = 8.0
# SQLSTATE classes that are the database's trouble, not the statement's: connection, resources, operator
# intervention, system, internal errors, and authorisation or catalogue problems of the configured DSN.
_SERVER_SIDE = ("08", "28", "3D", "53", "57", "58", "XX")


class DatabaseError(Exception):
    """The database could not run the statement (unreachable, down, out of resources) → 5.00."""

    def __repr__(self):
        # The agent answers a 5.00 with repr(exc): make it read as a sentence, not as Python.
        return "database error: %s" % self


def _coerce(value, pg_type, index):
    """A JSON value for parameter $index, converted to what asyncpg encodes for its PostgreSQL type.

    JSON has no dates or exact decimals: ISO strings and numbers are turned into them here. The server still
    does the binding; this only picks the Python type asyncpg wants for the type the server reported.
    """
    if value is None:
        return None
    name = pg_type.name
    try:
        if name in ("timestamptz", "timestamp") and isinstance(value, str):
            return datetime.datetime.fromisoformat(value)
        if name == "date" and isinstance(value, str):
            return datetime.date.fromisoformat(value)
        if name in ("time", "timetz") and isinstance(value, str):
            return datetime.time.fromisoformat(value)
        if name == "interval" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.timedelta(seconds=value)
        if name == "numeric" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return decimal.Decimal(str(value))
        if name in ("int2", "int4", "int8") and isinstance(value, float) and value.is_integer():
            return int(value)
        if name in ("float4", "float8") and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if name == "uuid" and isinstance(value, str):
            return uuid.UUID(value)
        if (
            name in ("text", "varchar", "bpchar", "name")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            return str(value)
    except (ValueError, decimal.InvalidOperation):
        raise ValueError("args[%d]: %r is not a valid %s" % (index - 1, value, name)) from None
    return value


def _rowcount(status):
    """'INSERT 0 3' → 3, 'UPDATE 2' → 2, 'CREATE TABLE' → 0."""
    last = (status or "").rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class Database:
    def __init__(self, cfg):
        self.databases = dict(cfg.get("databases") or {})
        self.max_rows = int(cfg.get("max_rows", _MAX_ROWS))
        self.max_bytes = int(cfg.get("max_bytes", MAX_BYTES))
        self.timeout_s = float(cfg.get("timeout_s", _TIMEOUT_S))

    async def _connect(self, database):
        dsn = self.databases.get(database)
        if dsn is None:
            known = ", ".join(sorted(self.databases)) or "none (start the process with --database NAME=DSN)"
            raise ValueError("no database %r on this process (configured: %s)" % (database, known))
        # A connection per command: jobs are seconds apart, and nothing outlives the agent's event loop
        # (the agent's top loop may start a new one after an error).
        try:
            conn = await asyncpg.connect(dsn, timeout=self.timeout_s, command_timeout=self.timeout_s)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseError(
                "cannot connect to database %r: %s" % (database, str(exc) or type(exc).__name__)
            ) from None
        for kind in ("json", "jsonb"):  # objects and lists in args and rows, not JSON text
            await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        return conn

    async def _run(self, database, sql, args, work):
        conn = await self._connect(database)
        try:
            statement = await conn.prepare(sql)
            params = statement.get_parameters()
            if len(args) != len(params):
                raise ValueError(
                    "the statement takes %d argument(s) ($1 … $%d), args has %d" % (len(params), len(params), len(args))
                )
            values = [_coerce(v, t, i) for i, (v, t) in enumerate(zip(args, params), start=1)]
            return await work(conn, statement, values)
        except asyncpg.PostgresError as exc:
            message = "database %r: %s (SQLSTATE %s)" % (database, exc, exc.sqlstate)
            if (exc.sqlstate or "XX")[:2] in _SERVER_SIDE:
                raise DatabaseError(message) from None
            raise ValueError(message) from None
        except asyncio.TimeoutError:
            raise DatabaseError("database %r: no answer within %g s" % (database, self.timeout_s)) from None
        except asyncpg.InterfaceError as exc:
            # asyncpg's own refusals: an argument it cannot encode for the parameter's type, and the like
            raise ValueError("database %r: %s" % (database, exc)) from None
        finally:
            await conn.close(timeout=2)

    async def query(self, sql, args=(), database="master"):
        """Rows of a statement that returns rows (SELECT, … RETURNING), at most max_rows of them."""

        async def fetch(conn, statement, values):
            async with conn.transaction():  # a portal (cursor) lives in a transaction
                cursor = await statement.cursor(*values)
                rows = await cursor.fetch(self.max_rows + 1)
            truncated = len(rows) > self.max_rows
            columns = [attr.name for attr in statement.get_attributes()]
            answer = {"rows": [], "rowcount": 0, "columns": columns, "truncated": True}
            budget = self.max_bytes - size(answer) - 8  # 8: room for rowcount's digits
            for row in rows[: self.max_rows]:
                row = jsonsafe(row)
                budget -= size(row) + 2  # ", " between rows
                if budget < 0:
                    truncated = True
                    break
                answer["rows"].append(row)
            answer["rowcount"] = len(answer["rows"])
            if not truncated:
                del answer["truncated"]
            return answer

        return await self._run(database, sql, list(args or ()), fetch)

    async def execute(self, sql, args=(), database="master"):
        """Run a statement for its effect (INSERT, UPDATE, DELETE, DDL); answer how many rows it touched."""

        async def run(conn, statement, values):
            await statement.fetch(*values)
            status = statement.get_statusmsg()
            return {"rowcount": _rowcount(status), "status": status}

        return await self._run(database, sql, list(args or ()), run)


def setup(cfg):
    return Database(cfg)
