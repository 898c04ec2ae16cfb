"""Queries of stored readings for charts: which series a device has, its latest values, and a time range
downsampled in SQL (min/max/avg per bucket), so a caller never holds more rows than it can draw.

Layer: storage (asyncpg only). The index readings_by_source (device_id, capability, path, at desc) serves every
query here as a range scan.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple


class Bucket(NamedTuple):
    """The readings of one series within [at, at + bucket): their count, least, greatest and mean value."""

    at: datetime
    count: int
    low: float
    high: float
    mean: float


class Latest(NamedTuple):
    capability: str
    path: str
    value: float
    at: datetime


# The distinct (capability, path) of a device by skipping through the index (a loose index scan): one probe per
# series instead of reading every stored reading.
_SOURCES = """
with recursive s as (
    (select capability, path from readings where device_id = $1 order by capability, path limit 1)
    union all
    select n.capability, n.path from s, lateral (
        select capability, path from readings
        where device_id = $1 and (capability, path) > (s.capability, s.path)
        order by capability, path limit 1) n
)
select s.capability, s.path, l.value, l.at from s, lateral (
    select value, at from readings r
    where r.device_id = $1 and r.capability = s.capability and r.path = s.path
    order by at desc limit 1) l
order by s.capability, s.path
"""

_HISTORY = """
select date_bin($5::interval, at, $3::timestamptz) as t, count(*) as n,
       min(value) as low, max(value) as high, avg(value) as mean
from readings
where device_id = $1 and capability = $2 and path = $6 and at >= $3 and at < $4
group by t order by t
"""


async def latest(db, device_id: str) -> list[Latest]:
    """Each series of the device with its newest reading, ordered by capability and path."""
    return [Latest(r["capability"], r["path"], r["value"], r["at"]) for r in await db.fetch(_SOURCES, device_id)]


async def history(
    db, device_id: str, capability: str, path: str, since: datetime, until: datetime, bucket: timedelta
) -> list[Bucket]:
    """The series' readings in [since, until) as buckets of `bucket` aligned on `since`, oldest first; buckets
    without a reading are absent (a gap: the board was offline or did not report)."""
    rows = await db.fetch(_HISTORY, device_id, capability, since, until, bucket, path)
    return [Bucket(r["t"], r["n"], r["low"], r["high"], r["mean"]) for r in rows]
