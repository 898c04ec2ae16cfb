"""A fleet of many boards on one master: its memory and idle CPU with all of them online, how long they take to
come back after a power cut, and how close together one role job moves them.

Set-up: an embedded PostgreSQL (or DATABASE_URL), `pifleet serve` as a process, BOARDS virtual ESP32s (the real
agent in the MicroPython unix port) flashed through the master as a person pairs them, with a role `fleet`
(a blind and a temperature sensor) whose sensor sends telemetry every 30 s, and a registration lifetime of 90 s
(a board updates its registration — its heartbeat — every lifetime/3 = 30 s).

Figures:
- all_online_s: all boards powered off and on again at once (a power cut in the house), until the master lists
  every one online with a registration of this boot;
- master_rss_mb: the master's resident memory with all boards online, after the idle window;
- idle_cpu_percent: the master's CPU (user+system, % of one core) over IDLE seconds with every board online,
  sending heartbeats and telemetry, and nothing due;
- role_job_spread_ms: one job over the role (`blind.move` down for 0.2 s, `POST /api/jobs/NAME/run`): first to
  last rising edge of the down pin across the boards (their pin logs, wall clock); the median over RUNS runs.
Beside them (the line before the last): the master's RSS with no board, the runner's send spread, the flashing
time and the boards' own memory (RSS per MicroPython process).

    python tools/bench/fleet_scale.py [--boards 200] [--idle 60] [--runs 3] [--flash-parallel 4] [--settle 5]

A CI smoke run: `--boards 3 --idle 2 --runs 1 --settle 0` (tests/system/scale/test_fleet_scale.py).
Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))
sys.path.insert(0, str(REPO))

import benchdb  # noqa: E402

from pifleet.model import FINAL_STATES  # noqa: E402
from pifleet.sim.board import VirtualBoard  # noqa: E402
from pifleet.storage import postgres  # noqa: E402
from tests.support.boards import firmware_id, flash  # noqa: E402 — boards paired as in the tests: flashed
from tests.support.masters import MasterProcess  # noqa: E402
from tests.support.waits import wait_until  # noqa: E402

ROLE = "fleet"
DOWN_PIN = 26
LIFETIME_S = 90  # a heartbeat (registration update) every 30 s
TELEMETRY_S = 30
SENT = re.compile(r"execution (\S+) of \S+: (\d+) commands sent within ([0-9.]+) ms")


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def first_rise(board: VirtualBoard, since: float) -> float | None:
    for t, pin, level in board.pin_history():
        if pin == DOWN_PIN and level and t >= since:
            return t
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, default=200)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measured (two heartbeats)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the role job")
    parser.add_argument("--flash-parallel", type=int, default=4, help="boards flashed at once (esptool over ptys)")
    parser.add_argument("--timeout", type=float, default=600.0, help="for all boards to come online")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start before the empty RSS")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-fleet-"))
    base, pg = benchdb.server(tmp)
    master = MasterProcess(tmp / "data", postgres.with_database(base, f"bench_fleet_{os.getpid()}"))
    # addresses of their own (127.77.0.0/16, all of 127/8 is loopback): the 253 of 127.0.0.x that boards take by
    # default are shared by every test run on the machine
    boards = [
        VirtualBoard(
            f"f-{i:03d}", tmp / f"board{i}", erased=True, master=master.coap, ip=f"127.77.{i // 250}.{i % 250 + 2}"
        )
        for i in range(args.boards)
    ]
    try:
        master.start()
        time.sleep(args.settle)  # the master's start-up work settles
        rss_empty = rss_mb(master.proc.pid)
        firmware_id(master)
        r = master.put(
            f"/api/roles/{ROLE}",
            {
                "description": "a blind and a temperature sensor",
                "modules": {"blind": {"up_pin": 25, "down_pin": 26}, "temperature": {"pin": 34, "telemetry_s": 30}},
            },
        )
        assert r.status_code < 300, r.text

        t0 = time.monotonic()
        for board in boards:
            board.start()
            board.set_input(adc={34: 750_000})  # 750 mV on the sensor's pin: 25.0 °C on a TMP36
        with ThreadPoolExecutor(args.flash_parallel) as pool:  # esptool over each board's pty: a few at a time
            list(pool.map(lambda b: flash(master, b, b.name, ROLE, lifetime_s=LIFETIME_S), boards))
        flash_s = time.monotonic() - t0
        names = {b.name for b in boards}

        def online_since(since: datetime):
            def check():
                ready = {
                    d["name"]
                    for d in master.get("/api/devices")
                    if d["online"]
                    and d["capabilities"]
                    and d["last_seen"]
                    and datetime.fromisoformat(d["last_seen"]) >= since
                }
                missing = names - ready
                return not missing or print(f"  {len(names) - len(missing)} of {len(names)} online", file=sys.stderr)

            return check

        wait_until(
            online_since(datetime.fromtimestamp(0, UTC)),
            timeout=args.timeout,
            what="all boards online",
            interval=2,
            explain=master.log_tail,
        )
        print(f"{len(boards)} boards flashed in {flash_s:.0f} s", file=sys.stderr)

        # a power cut: every board off, then all on at once
        for board in boards:
            board.kill()
        since = datetime.now(UTC)
        t0 = time.monotonic()
        for board in boards:
            board.start()
        wait_until(
            online_since(since),
            timeout=args.timeout,
            what="all boards online after the power cut",
            interval=1,
            explain=master.log_tail,
        )
        all_online_s = time.monotonic() - t0
        print(f"all {len(boards)} boards online {all_online_s:.1f} s after power-on", file=sys.stderr)

        process = psutil.Process(master.proc.pid)
        before, t0 = process.cpu_times(), time.monotonic()
        time.sleep(args.idle)
        after, elapsed = process.cpu_times(), time.monotonic() - t0
        idle_cpu = 100 * ((after.user - before.user) + (after.system - before.system)) / elapsed
        rss = rss_mb(master.proc.pid)
        print(f"master with {len(boards)} boards online: {rss:.0f} MB, idle CPU {idle_cpu:.1f} %", file=sys.stderr)
        board_rss = [rss_mb(b.pid) for b in boards if b.pid]
        readings = master.get(f"/api/devices/{boards[0].name}/readings")

        move = {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 0.2}}
        r = master.put(
            "/api/jobs/fleet-down",
            {"name": "fleet-down", "target": {"role": ROLE}, "action": move, "trigger": {"type": "manual"}},
        )
        assert r.status_code < 300, r.text
        pin_spreads, send_spreads, moved = [], [], []
        for _ in range(args.runs):
            since_t = time.time()
            offset = len(master.log_text())
            run = master.post("/api/jobs/fleet-down/run").json()
            wait_until(
                lambda: master.get(f"/api/executions/{run['id']}")["state"] in FINAL_STATES,
                timeout=120,
                what="the role run to settle",
                explain=master.log_tail,
            )
            try:  # every board's run has ended (succeeded or not); the pins of those that moved are in their logs
                wait_until(lambda: all(first_rise(b, since_t) for b in boards), timeout=10, what="every down pin")
            except AssertionError:
                pass
            rises = [t for b in boards if (t := first_rise(b, since_t)) is not None]
            moved.append(len(rises))
            assert rises, f"no blind moved:\n{master.log_tail()}"
            pin_spreads.append((max(rises) - min(rises)) * 1000)
            found = [m for m in SENT.finditer(master.log_text()[offset:]) if m.group(1) == run["id"]]
            if found:
                send_spreads.append(float(found[0].group(3)))
            time.sleep(0.5)  # the 0.2 s moves end before the next run

        spread = statistics.median(pin_spreads)
        send = statistics.median(send_spreads) if send_spreads else float("nan")
        print(
            f"{len(boards)} boards: master {rss:.0f} MB ({rss_empty:.0f} MB with none), idle CPU {idle_cpu:.1f} %,"
            f" readings of {boards[0].name}: {len(readings)}; each board {statistics.median(board_rss):.1f} MB"
            f" RSS ({sum(board_rss) / 1024:.2f} GB all); role job: pins within {spread:.0f} ms (median of"
            f" {len(pin_spreads)}, worst {max(pin_spreads):.0f}), commands sent within {send:.1f} ms; blinds moved per"
            f" run: {', '.join(f'{m}/{len(boards)}' for m in moved)}"
        )
        print(
            f"master_rss_empty_mb={rss_empty:.0f} role_job_send_spread_ms={send:.1f} flash_s={flash_s:.0f} "
            f"board_rss_mb={statistics.median(board_rss):.1f} role_job_moved={min(moved)}"
        )
        print(
            f"boards={len(boards)} master_rss_mb={rss:.0f} idle_cpu_percent={idle_cpu:.1f} "
            f"all_online_s={all_online_s:.1f} role_job_spread_ms={spread:.0f}"
        )
    finally:
        for board in boards:
            board.kill()
        master.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
