"""Readings: what boards report, stored in batches (store_reports), and the queries of the charts — which series a
device has, its latest values, and a time range downsampled in SQL (min/max/avg per bucket), so a caller never
holds more rows than it can draw.

Layer: storage (asyncpg only). The index readings_by_source (device_id, capability, path, at desc) serves every
query here as a range scan.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple


class Report(NamedTuple):
    """One telemetry request: the board it says it is, the address it came from, and its numbers."""

    device_id: str
    address: str
    capability: str
    values: list[tuple[str, float]]  # (dotted path, number)
    at: datetime  # when the master took it


class Finding(NamedTuple):
    """What became of one report: None (stored) or why it was refused, and the board's name (None if unknown)."""

    refusal: str | None
    name: str | None


# A batch of reports in one statement (one round trip, one commit): each report's board is looked up, the readings
# of those registered from the address the report came from are inserted, and every report's finding comes back
# (known board? its registered address) so each request gets its own answer. The readings go in as arrays
# (unnest): one statement however many rows, cheaper than executemany's statement per row and as cheap as COPY,
# which cannot join.
_STORE = """
with batch as (
    select * from unnest($1::text[], $2::text[]) with ordinality as b(device_id, address, n)
), seen as (
    select b.n, d.id is not null as known, d.name, d.address as registered, d.address = b.address as accepted
    from batch b left join devices d on d.id = b.device_id
), stored as (
    insert into readings (device_id, capability, path, value, at)
    select r.device_id, r.capability, r.path, r.value, r.at
    from unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::timestamptz[])
         as r(n, device_id, capability, path, value, at)
    join seen s on s.n = r.n and s.accepted
)
select n, known, name, registered from seen order by n
"""


async def store_reports(db, reports: list[Report]) -> list[Finding]:
    """Store the readings of every report sent from its board's registered address, in one statement (atomic: all
    of them or, on an error, none). For each report: what became of it."""
    ns, devices, caps, paths, values, ats = [], [], [], [], [], []
    for n, report in enumerate(reports, 1):
        for path, value in report.values:
            ns.append(n)
            devices.append(report.device_id)
            caps.append(report.capability)
            paths.append(path)
            values.append(value)
            ats.append(report.at)
    rows = await db.fetch(
        _STORE, [r.device_id for r in reports], [r.address for r in reports], ns, devices, caps, paths, values, ats
    )
    findings = []
    for report, row in zip(reports, rows, strict=True):
        if not row["known"]:
            refusal = f"unknown board {report.device_id!r}"
        elif row["registered"] != report.address:
            refusal = f"board {report.device_id} is registered from {row['registered']}, not {report.address}"
        else:
            refusal = None
        findings.append(Finding(refusal, row["name"]))
    return findings


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
