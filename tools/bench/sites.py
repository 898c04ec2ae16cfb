"""The cost of a command routed through another site: `POST /api/devices/NAME/commands` sent to the master of the
site that owns the board (local, the baseline) vs. to another site's master on the same database (routed: the
exchange is handed to the owner through the database, sites/relay.py, and the answer comes back the same way).

Set-up: an embedded PostgreSQL (or DATABASE_URL), two `pifleet serve --site NAME` processes (a and b) on one
database, one virtual ESP32 (the real agent in the MicroPython unix port) flashed through site a with the role
`blind`, as a person pairs it.

Figures, over COUNT presses each of `blind.move` down for 0.1 s, local and routed in alternating blocks:
- pin_ms: the moment just before the request is sent until the down pin's rising edge (the board's pin log, wall
  clock): median and p99, local and routed;
- answer_ms: until the API's answer (after the board's; it includes the 0.1 s move): median and p99;
- routed_extra_median_ms: what routing adds to the median pin time; ratio_median: routed / local.

    python tools/bench/sites.py [--count 100] [--block 10]

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

# the press and its pin edge, as command.py (the single-master bench) measures them
import benchdb  # noqa: E402
from command import MOVE, edge_after, settle  # noqa: E402

from pifleet.sim.board import VirtualBoard  # noqa: E402
from pifleet.storage import postgres  # noqa: E402
from tests.support.boards import flash  # noqa: E402 — paired as in the tests: flashed
from tests.support.masters import MasterProcess  # noqa: E402
from tests.support.waits import wait_until  # noqa: E402


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[-1] if len(values) >= 2 else values[0]


def press(master: MasterProcess, board: VirtualBoard) -> tuple[float, float]:
    since = time.time()
    r = master.post(f"/api/devices/{board.name}/commands", MOVE)
    answered = time.time() - since
    assert r.status_code == 200, r.text
    pin = edge_after(board, since)
    settle(board)
    return pin, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-sites-"))
    base, pg = benchdb.server(tmp)
    url = postgres.with_database(base, f"bench_sites_{os.getpid()}")
    a = MasterProcess(tmp / "a", url, environ={"PIFLEET_SITE": "a"})
    b = MasterProcess(tmp / "b", url, environ={"PIFLEET_SITE": "b"})
    board = VirtualBoard("site-blind", tmp / "board", erased=True, master=a.coap)
    try:
        a.start()
        b.start()  # set up already: the same token
        board.start()
        flash(a, board, board.name, "blind")
        wait_until(
            lambda: (d := b.device(board.name)) and d["online"] and d["capabilities"],
            timeout=120,
            what="the board online, seen from site b",
            explain=a.log_tail,
        )
        press(a, board), press(b, board)  # warm both paths up (connections, the relay's first call)
        local: list[tuple[float, float]] = []
        routed: list[tuple[float, float]] = []
        while len(local) < args.count or len(routed) < args.count:
            for _ in range(min(args.block, args.count - len(local))):
                local.append(press(a, board))
            for _ in range(min(args.block, args.count - len(routed))):
                routed.append(press(b, board))

        ms = 1000
        figures = {}
        for name, runs in (("local", local), ("routed", routed)):
            pins, answers = [p for p, _ in runs], [w for _, w in runs]
            figures[f"{name}_pin_median_ms"] = statistics.median(pins) * ms
            figures[f"{name}_pin_p99_ms"] = p99(pins) * ms
            figures[f"{name}_answer_median_ms"] = statistics.median(answers) * ms
            figures[f"{name}_answer_p99_ms"] = p99(answers) * ms
        extra = figures["routed_pin_median_ms"] - figures["local_pin_median_ms"]
        ratio = figures["routed_pin_median_ms"] / figures["local_pin_median_ms"]
        print(
            f"{args.count} presses each: pin high after {figures['local_pin_median_ms']:.1f} ms local,"
            f" {figures['routed_pin_median_ms']:.1f} ms routed through site b (median; p99"
            f" {figures['local_pin_p99_ms']:.1f} / {figures['routed_pin_p99_ms']:.1f} ms); answers after"
            f" {figures['local_answer_median_ms']:.1f} / {figures['routed_answer_median_ms']:.1f} ms (median, incl."
            " the 0.1 s move)",
            file=sys.stderr,
        )
        print(
            " ".join(f"{k}={v:.1f}" for k, v in figures.items())
            + f" routed_extra_median_ms={extra:.1f} ratio_median={ratio:.2f} count={args.count}"
        )
    finally:
        board.stop()
        b.stop()
        a.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
