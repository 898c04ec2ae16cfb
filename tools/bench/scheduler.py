"""The job engine under 10,000 enabled jobs: how late runs fire, what the idle master costs, how long the
7-day timeline takes, how long creating the jobs takes.

Set-up: an embedded PostgreSQL (or DATABASE_URL), `pifleet serve` as a process, one virtual ESP32 (blind role).
JOBS jobs are created through the REST API in two requests (`PUT /api/jobs` with a list): JOBS - FIRING daily
cron jobs spread over the day (the load of a big installation), then FIRING one-shot `at` jobs due over the next
WINDOW seconds, each sending the board a `blind.stop` (answered at once), so what is measured is the engine, not
a motor.

Figures:
- fire error = started_at − scheduled_for of each of the FIRING runs (the master's own timestamps: the database's
  clock when the run was claimed, against the instant it was planned for): median, p99, max. Baseline, in the
  same run: Huey's scheduler interval (1 s) — the consumer looks at its schedule once a second, which is what
  decided the instant before the event loop's alarm (jobs/alarm.py) did;
- the master's CPU (user+system, % of one core) over IDLE seconds with nothing due;
- time to answer GET /api/timeline?days=7 with all jobs (the response received; and how many entries it lists);
- create_jobs_s: the two requests that create the JOBS jobs. Baseline, in the same run: SAMPLE of the daily jobs
  saved again one request each (`PUT /api/jobs/NAME`, 16 at a time, as a script without the list would),
  scaled to JOBS (`one_by_one_est_s`).

    python tools/bench/scheduler.py [--jobs 10000] [--firing 200] [--window 60] [--idle 20] [--sample 300]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))
sys.path.insert(0, str(REPO))

import benchdb  # noqa: E402

from pifleet.sim.board import VirtualBoard  # noqa: E402
from pifleet.storage import postgres  # noqa: E402
from tests.support.boards import flash  # noqa: E402 — a board paired as in the tests: flashed by the master
from tests.support.masters import MasterProcess

HUEY_SCHEDULER_INTERVAL_S = 1.0  # what jobs/queue.py configures


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


async def put_each(url: str, docs: list[dict], headers: dict[str, str], concurrency: int = 16) -> float:
    """The baseline: one request per job."""
    started = time.monotonic()
    queue: asyncio.Queue = asyncio.Queue()
    for doc in docs:
        queue.put_nowait(doc)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            doc = queue.get_nowait()
            r = await client.put(f"{url}/api/jobs/{doc['name']}", json=doc)
            if r.status_code >= 300:
                raise SystemExit(f"creating {doc['name']}: {r.status_code} {r.text}")

    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return time.monotonic() - started


def put_list(url: str, docs: list[dict], headers: dict[str, str]) -> float:
    """All at once: one request, all or nothing."""
    started = time.monotonic()
    r = httpx.put(f"{url}/api/jobs", json=docs, headers=headers, timeout=600)
    if r.status_code >= 300:
        raise SystemExit(f"creating {len(docs)} jobs: {r.status_code} {r.text[:2000]}")
    return time.monotonic() - started


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--firing", type=int, default=200)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--sample", type=int, default=300)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-sched-"))
    base, pg = benchdb.server(tmp)
    database = postgres.with_database(base, f"bench_sched_{os.getpid()}")
    master = MasterProcess(tmp / "data", database)
    board = VirtualBoard("bench-blind", tmp / "board", erased=True)
    try:
        master.start()
        url = master.url
        board.start()
        flash(master, board, "bench-blind", "blind")
        wait(lambda: any(d["online"] and d["capabilities"] for d in master.get("/api/devices")), 60, "the board online")

        rng = random.Random(7)
        stop = {"capability": "blind", "command": "stop"}
        docs = [
            {
                "name": f"daily-{i}",
                "target": {"device": "bench-blind"},
                "action": stop,
                "trigger": {
                    "type": "cron",
                    "expr": f"{rng.randrange(60)} {rng.randrange(24)} * * *",
                    "tz": "Europe/Berlin",
                },
            }
            for i in range(args.jobs - args.firing)
        ]
        created = put_list(url, docs, master.headers)
        # the firing jobs are created last, due from 15 s after the last one is saved, spread over the window
        first_due = datetime.now(UTC) + timedelta(seconds=15)
        due = [first_due + timedelta(seconds=args.window * i / args.firing) for i in range(args.firing)]
        firing = [
            {
                "name": f"fire-{i}",
                "target": {"device": "bench-blind"},
                "action": stop,
                "trigger": {"type": "at", "at": when.isoformat()},
            }
            for i, when in enumerate(due)
        ]
        created += put_list(url, firing, master.headers)
        print(f"created {args.jobs} jobs in {created:.1f} s", file=sys.stderr)

        def fired():
            runs = master.get("/api/executions", params={"state": "succeeded", "limit": 500})
            runs = [e for e in runs if e["job"].startswith("fire-")]
            return runs if len(runs) >= args.firing else None

        # the client keeps quiet while they fire (a poll of 500 executions is work on the master's loop too)
        time.sleep(max(0.0, (due[-1] - datetime.now(UTC)).total_seconds() + 2))
        runs = wait(fired, 120, "all firing jobs to run")
        errors_ms = [
            (datetime.fromisoformat(e["started_at"]) - datetime.fromisoformat(e["scheduled_for"])).total_seconds()
            * 1000
            for e in runs
        ]

        process = psutil.Process(master.proc.pid)
        before, t0 = process.cpu_times(), time.monotonic()
        time.sleep(args.idle)
        after, elapsed = process.cpu_times(), time.monotonic() - t0
        idle_cpu = 100 * ((after.user - before.user) + (after.system - before.system)) / elapsed

        t0 = time.monotonic()
        answer = httpx.get(url + "/api/timeline", params={"days": 7}, timeout=300, headers=master.headers)
        timeline_s = time.monotonic() - t0
        timeline = answer.json()

        sample = docs[: args.sample]
        one_by_one = asyncio.run(put_each(url, sample, master.headers)) * args.jobs / len(sample)

        median, p99, worst = statistics.median(errors_ms), percentile(errors_ms, 99), max(errors_ms)
        interval_ms = HUEY_SCHEDULER_INTERVAL_S * 1000
        print(
            f"fire error over {len(errors_ms)} runs: median {median:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms"
            f" (Huey's scheduler looks once every {HUEY_SCHEDULER_INTERVAL_S:g} s)"
        )
        print(f"idle master CPU with {args.jobs} jobs: {idle_cpu:.1f} % of one core")
        print(f"timeline for 7 days: {len(timeline)} entries in {timeline_s:.2f} s")
        print(
            f"created {args.jobs} jobs in {created:.1f} s in two requests; one request each would take about"
            f" {one_by_one:.0f} s ({len(sample)} measured)"
        )
        print(
            f"jobs={args.jobs} median_fire_error_ms={median:.1f} p99_fire_error_ms={p99:.1f} "
            f"max_fire_error_ms={worst:.1f} huey_scheduler_interval_ms={interval_ms:.0f} "
            f"p99_vs_huey_interval={p99 / interval_ms:.3f} idle_cpu_percent={idle_cpu:.1f} "
            f"timeline_7d_s={timeline_s:.2f} timeline_entries={len(timeline)} create_jobs_s={created:.1f} "
            f"one_by_one_est_s={one_by_one:.0f} ratio_create_vs_one_by_one={created / one_by_one:.3f}"
        )
    finally:
        board.stop()
        master.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
