"""The readings-range query of the board page's charts with 1,000,000 readings stored: p95 of the downsampled
query (storage/readings.history: min/max/avg per bucket in SQL) against the baseline of fetching the same range's
raw rows (what a page would receive without downsampling), both in the same run on the same database.

Set-up: an embedded PostgreSQL (or DATABASE_URL), a fresh database migrated like a master's, --devices boards,
each with one series; the readings (--readings in all) are one a minute per board going back from now, so the
board charted has 30 days (43,200 readings) and the rest lie in the other boards' series, in the same table and
index. Each query is run --runs times per range (24 h, 7 d, 30 d), in turns, after a warm-up.

Figures: p95 and median of the downsampled query per range (ms), the points it returns (at most --buckets), and
the raw fetch's p95 for 30 d with the number of rows it returns; the series query (latest value per series, by a
loose index scan) too.

    python tools/bench/readings.py [--readings 1000000] [--devices 23] [--runs 50] [--buckets 240]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))

from pifleet.storage import migrations, postgres  # noqa: E402
from pifleet.storage import readings as q  # noqa: E402

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
RAW = "select at, value from readings where device_id = $1 and capability = $2 and path = $3 and at >= $4 and at < $5"


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[18] if len(xs) >= 2 else xs[0]


async def fill(pool, devices: list[str], total: int, now: datetime) -> None:
    """`total` readings, one a minute per device going back from now, written with COPY."""
    per = total // len(devices)
    async with pool.acquire() as conn:
        for n, device in enumerate(devices):
            await conn.execute("insert into devices (id, name, kind) values ($1, $2, 'board')", device, f"bench-{n}")
            count = per + (total - per * len(devices) if n == 0 else 0)
            rows = [
                (device, "climate", "celsius", 20 + (i % 600) / 60, now - timedelta(minutes=i + 1))
                for i in range(count)
            ]
            await conn.copy_records_to_table(
                "readings", records=rows, columns=["device_id", "capability", "path", "value", "at"]
            )
        await conn.execute("analyze readings")


async def bench(url: str, args) -> str:
    await postgres.ensure_database(url)
    pool = await postgres.create_pool(url)
    try:
        await migrations.migrate(pool)
        devices = [f"bench{n:04d}" + uuid.uuid4().hex[:8] for n in range(args.devices)]
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        await fill(pool, devices, args.readings, now)
        fill_s = time.perf_counter() - t0
        stored = await pool.fetchval("select count(*) from readings")
        charted = devices[1] if len(devices) > 1 else devices[0]
        print(f"stored {stored} readings in {fill_s:.1f} s; charting {charted}", flush=True)

        times: dict[str, list[float]] = {r: [] for r in RANGES}
        points: dict[str, int] = {}
        raw_times: list[float] = []
        raw_rows = 0
        series_times: list[float] = []
        for turn in range(args.runs + 3):  # the first three warm the cache and are not counted
            for name, span in RANGES.items():
                since = now - span
                width = timedelta(seconds=max(1, -(-span.total_seconds() // args.buckets)))  # as DeviceService.history
                t = time.perf_counter()
                buckets = await q.history(pool, charted, "climate", "celsius", since, now, width)
                if turn >= 3:
                    times[name].append((time.perf_counter() - t) * 1000)
                points[name] = len(buckets)
            t = time.perf_counter()
            rows = await pool.fetch(RAW, charted, "climate", "celsius", now - RANGES["30d"], now)
            if turn >= 3:
                raw_times.append((time.perf_counter() - t) * 1000)
            raw_rows = len(rows)
            t = time.perf_counter()
            await q.latest(pool, charted)
            if turn >= 3:
                series_times.append((time.perf_counter() - t) * 1000)
        for name in RANGES:
            print(
                f"{name}: p95 {p95(times[name]):.1f} ms, median {statistics.median(times[name]):.1f} ms, "
                f"{points[name]} points",
                flush=True,
            )
        print(f"raw 30d: p95 {p95(raw_times):.1f} ms, {raw_rows} rows", flush=True)
        figures = {
            "readings": stored,
            **{f"p95_{n}_ms": round(p95(times[n]), 1) for n in RANGES},
            **{f"median_{n}_ms": round(statistics.median(times[n]), 1) for n in RANGES},
            "points_30d": points["30d"],
            "raw_p95_30d_ms": round(p95(raw_times), 1),
            "raw_rows_30d": raw_rows,
            "ratio_p95_30d_vs_raw": round(p95(times["30d"]) / p95(raw_times), 2),
            "series_p95_ms": round(p95(series_times), 2),
        }
        return " ".join(f"{k}={v}" for k, v in figures.items())
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=23, help="boards sharing the table (one charted)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--buckets", type=int, default=240, help="at most this many points per chart (the page's)")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="pifleet-bench-readings-") as tmp:
        if base := os.environ.get("DATABASE_URL"):
            url = postgres.with_database(base, f"bench_readings_{uuid.uuid4().hex[:8]}")
        else:
            server = postgres.start_embedded(Path(tmp) / "pg")
            url = postgres.embedded_url(server, "bench_readings")
        try:
            line = asyncio.run(bench(url, args))
        finally:
            if server is not None:
                server.cleanup()
    print(line)


if __name__ == "__main__":
    main()
