"""Queries of the boards' logs (sql/0016): a batch appended with its line numbers, the oldest lines trimmed, a
board's newest lines read back.

Layer: storage (asyncpg only). Every query here is a range of the primary key (device_id, seq): appending takes
the numbers from the board's row in board_log_heads (one row update, which also puts two batches of one board one
after the other), and trimming deletes only the lines that fell out of the kept window, so a batch costs the same
whether the board has 10 lines stored or 10,000.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class Line(NamedTuple):
    seq: int
    at: datetime
    line: str


class Sender(NamedTuple):
    """What a batch is checked against: the board's name, whether it is registered, and from which address."""

    name: str
    registered: bool
    address: str | None


_HEAD = """
insert into board_log_heads (device_id, last_seq) values ($1, $2)
on conflict (device_id) do update set last_seq = board_log_heads.last_seq + excluded.last_seq
returning last_seq, now() as at
"""

_APPEND = """
insert into board_logs (device_id, seq, at, line)
select $1, $2 + n, now(), line from unnest($3::text[]) with ordinality as t(line, n)
"""

_NEWEST = """
select seq, at, line from (
    select seq, at, line from board_logs
    where device_id = $1 and ($2::timestamptz is null or at >= $2)
    order by seq desc limit $3
) newest order by seq
"""


async def sender(db, device_id: str) -> Sender | None:
    row = await db.fetchrow("select name, registration_id, address from devices where id = $1", device_id)
    return Sender(row["name"], row["registration_id"] is not None, row["address"]) if row else None


async def device_id(db, name: str) -> str | None:
    return await db.fetchval("select id from devices where name = $1", name)


async def append(pool, device_id: str, lines: list[str], keep: int) -> list[Line]:
    """Store a batch after the board's newest line and drop what is older than its `keep` newest; the batch as
    stored (numbers and received time)."""
    async with pool.acquire() as conn, conn.transaction():
        last, at = await conn.fetchrow(_HEAD, device_id, len(lines))  # now(): the transaction's start, as below
        first = last - len(lines)
        await conn.execute(_APPEND, device_id, first, lines)
        await conn.execute("delete from board_logs where device_id = $1 and seq <= $2", device_id, last - keep)
    return [Line(first + 1 + i, at, line) for i, line in enumerate(lines)]


async def newest(db, device_id: str, since: datetime | None, limit: int) -> list[Line]:
    """The board's newest `limit` lines received at or after `since`, oldest first."""
    return [Line(r["seq"], r["at"], r["line"]) for r in await db.fetch(_NEWEST, device_id, since, limit)]
