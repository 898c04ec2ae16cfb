"""Blinds in step: how close together a role job's commands leave the master and move the boards' pins.

Set-up: an embedded PostgreSQL (or DATABASE_URL), `pifleet serve` as a process, BOARDS virtual ESP32s (the real
agent in the MicroPython unix port) flashed through the master with the role `blind`, as a person pairs them.

Figures, over RUNS runs of one job targeting the role (`blind.move` down for 0.2 s, started by
`POST /api/jobs/NAME/run`):
- send spread: first to last command sent by the master for one run (the runner's log line "N commands sent
  within X ms", timed at the send of each command);
- pin spread: first to last rising edge of the blind's down pin across the boards (their pin logs, wall clock);
Baseline, in the same run: BOARDS separate device jobs due at one instant (an `at` trigger each), as a person
would have had to write them — their pin spread.

    python tools/bench/group.py [--boards 20] [--runs 5]

Last line: name=value figures (spreads are the median over the runs; *_max_ms the worst run).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))
sys.path.insert(0, str(REPO))

from pifleet.model import FINAL_STATES  # noqa: E402
from pifleet.sim.board import VirtualBoard  # noqa: E402
from pifleet.storage import postgres  # noqa: E402
from tests.support.boards import firmware_id, flash  # noqa: E402 — boards paired as in the tests: flashed
from tests.support.masters import MasterProcess  # noqa: E402
from tests.support.waits import wait_until  # noqa: E402

DOWN_PIN = 26  # the blind role's preset down pin on a virtual board
SENT = re.compile(r"execution (\S+) of \S+: (\d+) commands sent within ([0-9.]+) ms")


def rising_edges(board: VirtualBoard, since: float) -> list[float]:
    return [t for t, pin, level in board.pin_history() if pin == DOWN_PIN and level and t >= since]


def pin_spread_ms(boards: list[VirtualBoard], since: float) -> float:
    firsts = [
        wait_until(lambda b=b: rising_edges(b, since), timeout=30, what=f"{b.name}'s down pin")[0] for b in boards
    ]
    return (max(firsts) - min(firsts)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-group-"))
    pg = None
    if os.environ.get("DATABASE_URL"):
        base = os.environ["DATABASE_URL"]
    else:
        pg = postgres.start_embedded(tmp / "pg")
        base = postgres.embedded_url(pg, "postgres")
    master = MasterProcess(tmp / "data", postgres.with_database(base, f"bench_group_{os.getpid()}"))
    boards = [
        VirtualBoard(f"g-blind-{i:02d}", tmp / f"board{i}", erased=True, master=master.coap)
        for i in range(1, args.boards + 1)
    ]
    try:
        master.start()
        firmware_id(master)
        for board in boards:
            board.start()
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:  # flashing is esptool over each board's pty: a few at a time
            list(pool.map(lambda b: flash(master, b, b.name, "blind"), boards))

        def all_online():
            online = {d["name"] for d in master.get("/api/devices") if d["online"] and d["capabilities"]}
            return all(b.name in online for b in boards)

        wait_until(all_online, timeout=120, what="all boards online", explain=master.log_tail)
        print(f"{len(boards)} boards flashed and online in {time.monotonic() - t0:.0f} s", file=sys.stderr)

        move = {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 0.2}}
        r = master.put(
            "/api/jobs/in-step",
            {"name": "in-step", "target": {"role": "blind"}, "action": move, "trigger": {"type": "manual"}},
        )
        assert r.status_code < 300, r.text

        send_spreads, pin_spreads = [], []
        for _ in range(args.runs):
            since = time.time()
            offset = len(master.log_text())
            run = master.post("/api/jobs/in-step/run").json()
            wait_until(
                lambda: master.get(f"/api/executions/{run['id']}")["state"] in FINAL_STATES,
                timeout=60,
                what="the role run to settle",
                explain=master.log_tail,
            )
            found = wait_until(
                lambda: [m for m in SENT.finditer(master.log_text()[offset:]) if m.group(1) == run["id"]],
                timeout=10,
                what="the runner's send line",
            )
            assert int(found[0].group(2)) == len(boards), found[0].group(0)
            send_spreads.append(float(found[0].group(3)))
            pin_spreads.append(pin_spread_ms(boards, since))
            time.sleep(0.3)  # the 0.2 s moves end before the next run

        # baseline: one device job per board, all due at the same instant
        since = time.time()
        due = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        docs = [
            {
                "name": f"alone-{b.name}",
                "target": {"device": b.name},
                "action": move,
                "trigger": {"type": "at", "at": due},
            }
            for b in boards
        ]
        r = master.put("/api/jobs", docs)
        assert r.status_code < 300, r.text
        separate = pin_spread_ms(boards, since)

        send, pin = statistics.median(send_spreads), statistics.median(pin_spreads)
        print(
            f"role job over {len(boards)} boards, {args.runs} runs: commands sent within {send:.1f} ms (median),"
            f" {max(send_spreads):.1f} ms (worst); pins moved within {pin:.1f} ms (median), {max(pin_spreads):.1f} ms"
            f" (worst); {len(boards)} separate jobs due at one instant: pins within {separate:.1f} ms"
        )
        print(
            f"boards={len(boards)} runs={args.runs} group_send_spread_ms={send:.1f} group_pin_spread_ms={pin:.1f} "
            f"group_send_spread_max_ms={max(send_spreads):.1f} group_pin_spread_max_ms={max(pin_spreads):.1f} "
            f"separate_jobs_pin_spread_ms={separate:.1f} ratio_pin_vs_separate={pin / separate if separate else 0:.2f}"
        )
    finally:
        for board in boards:
            board.stop()
        master.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
