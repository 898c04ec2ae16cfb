"""Blinds in step: how close together a role job's commands leave the master and move the boards' pins.

Set-up: an embedded PostgreSQL (or DATABASE_URL), `pifleet serve` as a process, BOARDS virtual ESP32s (the real
agent in the MicroPython unix port) flashed through the master with the role `blind`, as a person pairs them.

Figures, over RUNS runs of one job targeting the role (`blind.move` down for 0.2 s, started by
`POST /api/jobs/NAME/run`):
- send spread: first to last command sent by the master for one run (the runner's log line "N commands sent
  within X ms, due at T (L ms ahead)", timed at the send of each command);
- pin spread: first to last rising edge of the blind's down pin across the boards (their pin logs, wall clock).
  The commands carry the run's instant T (jobs/runner.py, docs/jobs.md "In step"): each board waits for it by its
  own clock and moves its pin then;
- pin after due: each board's edge minus T (median over boards and runs, and the worst): how precisely a virtual
  board acts at the instant (its clock is its host's, so this is the wait's wake-up and the work to the pin);
- lead: how far ahead of the first command T was (median); late commands: how many boards read theirs after T
  (they act at once; the runner logs it).
Baseline, in the same run: BOARDS separate device jobs due at one instant (an `at` trigger each), as a person
would have had to write them — their pin spread. A device's own command carries no instant: each board acts when it
has read its command, which is how a role run's boards acted before the instant too.

Where the pin spread comes from: the boards are MicroPython processes sharing the host's cores, and each has
to unprotect its OSCORE request and run the command before its pin moves (without the instant, the whole command;
with it, the few ms from the instant to the pin, all boards at once). So the run also reads each board's
CPU time (user+system, /proc) before and after every run — `board_cpu_per_command_ms` is what one command
costs a board — and, with `--sweep 5,10`, runs the same job over groups of the first 5 and 10 boards: a spread
that grows with the number of boards while the send spread stays put is the boards queueing for a core
(`cpu_queue_ms` = BOARDS × board_cpu_per_command_ms / cores is what that queue alone would take).

    python tools/bench/group.py [--boards 20] [--runs 5] [--sweep 5,10]

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

DOWN_PIN = 26  # the blind role's preset down pin on a virtual board
SENT = re.compile(
    r"execution (\S+) of \S+: (\d+) commands sent within ([0-9.]+) ms(?: \(\d+ not sent\))?"
    r"(?:, due at (\S+) \((\d+) ms ahead\))?"
)


def rising_edges(board: VirtualBoard, since: float) -> list[float]:
    return [t for t, pin, level in board.pin_history() if pin == DOWN_PIN and level and t >= since]


def first_edges(boards: list[VirtualBoard], since: float) -> list[float]:
    return [wait_until(lambda b=b: rising_edges(b, since), timeout=30, what=f"{b.name}'s down pin")[0] for b in boards]


def pin_spread_ms(boards: list[VirtualBoard], since: float) -> float:
    firsts = first_edges(boards, since)
    return (max(firsts) - min(firsts)) * 1000


def boards_cpu_s(boards: list[VirtualBoard]) -> float:
    """The boards' processes' CPU time so far (user + system)."""
    total = 0.0
    for board in boards:
        times = psutil.Process(board.pid).cpu_times()
        total += times.user + times.system
    return total


def run_job(master, name: str, boards: list[VirtualBoard]) -> tuple[float, float, float, list[float], int, int]:
    """One run of a job over `boards`: its send spread, pin spread (ms), the boards' CPU time for it (s), each
    board's edge after the run's instant (ms; empty without one), the lead (ms), and how many boards got their
    command after the instant (they act at once and say so: the runner logs "the board acted at once")."""
    since = time.time()
    offset = len(master.log_text())
    cpu = boards_cpu_s(boards)
    run = master.post(f"/api/jobs/{name}/run").json()
    wait_until(
        lambda: master.get(f"/api/executions/{run['id']}")["state"] in FINAL_STATES,
        timeout=60,
        what="the run to settle",
        explain=master.log_tail,
    )
    found = wait_until(
        lambda: [m for m in SENT.finditer(master.log_text()[offset:]) if m.group(1) == run["id"]],
        timeout=10,
        what="the runner's send line",
    )
    assert int(found[0].group(2)) == len(boards), found[0].group(0)
    edges = first_edges(boards, since)
    pins = (max(edges) - min(edges)) * 1000
    after_due, lead = [], 0
    if found[0].group(4):
        due = datetime.fromisoformat(found[0].group(4)).timestamp()
        after_due, lead = [(edge - due) * 1000 for edge in edges], int(found[0].group(5))
    late = master.log_text()[offset:].count(f" of {name}: the board acted at once")
    time.sleep(0.3)  # the 0.2 s moves end (and their stop is part of the command's cost) before the next run
    return float(found[0].group(3)), pins, boards_cpu_s(boards) - cpu, after_due, lead, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sweep", default="5,10", help="also run the job over the first N boards (comma-separated)")
    args = parser.parse_args()
    sweep = [int(n) for n in args.sweep.split(",") if n.strip() and int(n) < args.boards]

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-group-"))
    base, pg = benchdb.server(tmp)
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

        send_spreads, pin_spreads, cpu, after_due, leads, late_boards = [], [], [], [], [], 0
        for _ in range(args.runs):
            send, pins, used, late, lead, came_late = run_job(master, "in-step", boards)
            late_boards += came_late
            send_spreads.append(send)
            pin_spreads.append(pins)
            cpu.append(used)
            after_due += late
            leads.append(lead)

        swept = {}
        for n in sweep:  # the same job over fewer boards: a group of the first n
            r = master.put(f"/api/groups/first-{n}", {"devices": [b.name for b in boards[:n]]})
            assert r.status_code < 300, r.text
            spec = {"name": f"in-step-{n}", "target": {"group": f"first-{n}"}, "action": move}
            r = master.put(f"/api/jobs/in-step-{n}", spec | {"trigger": {"type": "manual"}})
            assert r.status_code < 300, r.text
            runs = [run_job(master, f"in-step-{n}", boards[:n]) for _ in range(args.runs)]
            swept[n] = statistics.median(r[1] for r in runs), statistics.median(r[0] for r in runs)

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
        per_command_ms = statistics.median(cpu) * 1000 / len(boards)
        after_due = after_due or [0.0]
        after_median, after_worst = statistics.median(after_due), max(after_due, key=abs)
        cores = os.cpu_count() or 1
        queue_ms = len(boards) * per_command_ms / cores
        print(
            f"role job over {len(boards)} boards, {args.runs} runs: commands sent within {send:.1f} ms (median),"
            f" {max(send_spreads):.1f} ms (worst); pins moved within {pin:.1f} ms (median), {max(pin_spreads):.1f} ms"
            f" (worst); {len(boards)} separate jobs due at one instant: pins within {separate:.1f} ms"
        )
        print(
            f"  the run's instant was {statistics.median(leads)} ms ahead of its first command (median); the pins"
            f" moved {after_median:.1f} ms after it (median over boards and runs), {after_worst:.1f} ms at worst;"
            f" {late_boards} of {len(boards) * args.runs} commands came after it (acted at once)"
        )
        for n, (pins, sent) in swept.items():
            print(f"  the same job over {n} boards: pins within {pins:.1f} ms, commands sent within {sent:.1f} ms")
        print(
            f"  a command costs a board {per_command_ms:.1f} ms of CPU (its process, /proc): {len(boards)} boards on"
            f" {cores} cores queue {queue_ms:.0f} ms for it"
        )
        sweep_figures = "".join(f"group_pin_spread_{n}_ms={pins:.1f} " for n, (pins, _) in swept.items())
        print(
            f"boards={len(boards)} runs={args.runs} group_send_spread_ms={send:.1f} group_pin_spread_ms={pin:.1f} "
            f"group_send_spread_max_ms={max(send_spreads):.1f} group_pin_spread_max_ms={max(pin_spreads):.1f} "
            f"separate_jobs_pin_spread_ms={separate:.1f} ratio_pin_vs_separate={pin / separate if separate else 0:.2f} "
            f"lead_ms={statistics.median(leads)} pin_after_due_ms={after_median:.1f} "
            f"pin_after_due_max_ms={after_worst:.1f} late_commands={late_boards} "
            f"{sweep_figures}board_cpu_per_command_ms={per_command_ms:.1f} cpu_queue_ms={queue_ms:.0f}"
        )
    finally:
        for board in boards:
            board.stop()
        master.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
