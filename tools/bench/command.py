"""A person's command, from the request to the pin: `POST /api/devices/NAME/commands` (what a board page's button
sends) until the virtual blind's down pin goes high, vs. the same command as a job run now.

Set-up: an embedded PostgreSQL (or DATABASE_URL), `pifleet serve` as a process, one virtual ESP32 (the real agent in
the MicroPython unix port) flashed through the master with the role `blind`, as a person pairs it.

Figures, over COUNT presses of `blind.move` down for 0.1 s each, in alternating blocks with the baseline:
- press_to_pin_ms: the moment just before the request is sent until the down pin's rising edge (the board's pin log,
  wall clock); median and p95;
- answer_ms: until the API's answer (it comes after the board's, so it includes the 0.1 s move);
Baseline, in the same run: `POST /api/jobs/NAME/run` of a manual job with the same action (the scheduler's path:
planned, handed to the durable queue and its alarm, claimed, sent) until the pin's rising edge.

    python tools/bench/command.py [--count 50] [--block 10]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))
sys.path.insert(0, str(REPO))

import benchdb  # noqa: E402

from pifleet.sim.board import VirtualBoard  # noqa: E402
from pifleet.storage import postgres  # noqa: E402
from tests.support.boards import firmware_id, flash  # noqa: E402 — paired as in the tests: flashed
from tests.support.masters import MasterProcess  # noqa: E402
from tests.support.waits import wait_until  # noqa: E402

DOWN_PIN = 26  # the blind role's preset down pin on a virtual board
MOVE = {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 0.1}}


def edge_after(board: VirtualBoard, since: float) -> float:
    """Seconds from `since` to the down pin's first rising edge after it."""
    edges = wait_until(
        lambda: [t for t, pin, level in board.pin_history() if pin == DOWN_PIN and level and t >= since],
        timeout=30,
        what="the down pin's rising edge",
    )
    return edges[0] - since


def settle(board: VirtualBoard) -> None:
    """Wait until the move has ended (the pin is low again), so the next press starts from rest."""
    wait_until(
        lambda: [level for _, pin, level in board.pin_history() if pin == DOWN_PIN][-1:] != [1],
        timeout=10,
        what="the down pin low again",
    )
    time.sleep(0.05)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-command-"))
    base, pg = benchdb.server(tmp)
    master = MasterProcess(tmp / "data", postgres.with_database(base, f"bench_command_{os.getpid()}"))
    board = VirtualBoard("press-1", tmp / "board", erased=True, master=master.coap)
    try:
        master.start()
        firmware_id(master)
        board.start()
        flash(master, board, board.name, "blind")
        wait_until(
            lambda: any(
                d["name"] == board.name and d["online"] and d["capabilities"] for d in master.get("/api/devices")
            ),
            timeout=120,
            what="the board online",
            explain=master.log_tail,
        )
        job = {"name": "press", "target": {"device": board.name}, "action": MOVE, "trigger": {"type": "manual"}}
        assert master.put("/api/jobs/press", job).status_code < 300

        press, answer, baseline = [], [], []
        while len(press) < args.count or len(baseline) < args.count:
            for _ in range(min(args.block, args.count - len(press))):
                since = time.time()
                r = master.post(f"/api/devices/{board.name}/commands", MOVE)
                answered = time.time() - since
                assert r.status_code == 200, r.text
                press.append(edge_after(board, since))
                answer.append(answered)
                settle(board)
            for _ in range(min(args.block, args.count - len(baseline))):
                since = time.time()
                r = master.post("/api/jobs/press/run")
                assert r.status_code == 202, r.text
                baseline.append(edge_after(board, since))
                settle(board)

        ms = 1000
        med, base_med = statistics.median(press) * ms, statistics.median(baseline) * ms
        print(
            f"{args.count} presses: pin high {med:.1f} ms after the request (median), {p95(press) * ms:.1f} ms (p95);"
            f" answer after {statistics.median(answer) * ms:.1f} ms (median, incl. the 0.1 s move);"
            f" as a job run now: {base_med:.1f} ms (median)",
            file=sys.stderr,
        )
        print(
            f"press_to_pin_median_ms={med:.1f} press_to_pin_p95_ms={p95(press) * ms:.1f}"
            f" answer_median_ms={statistics.median(answer) * ms:.1f} job_run_to_pin_median_ms={base_med:.1f}"
            f" ratio_median={med / base_med:.2f} count={args.count}"
        )
    finally:
        board.stop()
        master.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
