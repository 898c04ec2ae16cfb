"""The board agent's heap as a plain ESP32 would see it (32-bit), beside the 64-bit unix port's figures.

A paired blind board (config.json, secret and OSCORE context as flashing writes them; the agent and the role
as the .mpy files flashing builds) boots in a MicroPython that is stepped datagram by datagram
(tools/bench/heap32/): the 32-bit wasm build from npm under Node, and the virtual board's 64-bit unix port.
This side plays the master with aiocoap's OSCORE: it answers the board's registration, then sends 1,000
protected commands (mostly `blind.stop`, every tenth a 0.1 s move), then pushes a 10 KB module in 512-byte
protected blocks (as the gateway does to a paired board) and switches the role to it. Figures:

- *_boot_b: gc.mem_alloc() after boot (registered) and gc.collect();
- *_after_1000_b: the same after the commands;
- *_push_peak_b: the highest gc.mem_alloc() seen during any block of the push or the role switch: read when the
  agent sends a datagram or asks for a collection, and after the exchange, with nothing collected since the
  collection before it (an upper bound of what the step needs at once);
- boot_path_mpy_bytes: the size of the .mpy files imported at boot (agent and role).
The stand-ins for what a board has in C (socket, machine, network, cryptolib) are measured and taken off.
Baseline (same run): the bare interpreter's mem_alloc. Budgets (docs/agent.md, "Heap"): boot <= 49152,
after 1,000 <= 57344, push peak <= 65536 on 32 bits.

    python tools/bench/board_heap.py [--commands 1000] [--push-kb 10] [--only32] [--min-heap]

--min-heap also bisects the smallest `-X heapsize` a virtual board (64-bit) boots and serves 100 commands in.
Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heap32 import harness  # noqa: E402

BUDGET = {"boot": 49152, "after_1000": 57344, "push_peak": 65536}


async def _min_heap(low: int, high: int, step: int) -> tuple[int, int, int]:
    """(alloc after boot, after 100 commands, smallest heapsize) of a virtual blind board (unix port)."""
    import aiocoap
    from aiocoap.numbers.codes import Code

    from pifleet.runtime import free_udp_port
    from pifleet.sim import VirtualBoard

    async def get(ctx, uri):
        return await asyncio.wait_for(ctx.request(aiocoap.Message(code=Code.GET, uri=uri)).response, 10)

    async def trial(ctx, heapsize: int, workdir: Path) -> tuple[int, int] | None:
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
            after_boot = json.loads((await get(ctx, base + "/stats")).payload)["mem_alloc"]
            for i in range(100):
                if i % 10 == 0:
                    body = {"eid": f"b{i}", "params": {"direction": "up" if i % 20 else "down", "seconds": 0.1}}
                    path = "/a/blind/move"
                else:
                    body = {"eid": f"b{i}", "params": {}}
                    path = "/a/blind/stop"
                msg = aiocoap.Message(code=Code.POST, uri=base + path, payload=json.dumps(body).encode())
                if (await asyncio.wait_for(ctx.request(msg).response, 10)).code != Code.CHANGED:
                    return None
            return after_boot, json.loads((await get(ctx, base + "/stats")).payload)["mem_alloc"]
        except (asyncio.TimeoutError, aiocoap.error.Error, ValueError, KeyError):
            return None
        finally:
            await board.stop_async(timeout=5)

    ctx = await aiocoap.Context.create_client_context()
    try:
        with tempfile.TemporaryDirectory(prefix="board-heap-") as tmp:
            full = await trial(ctx, high, Path(tmp))
            if full is None:
                raise SystemExit(f"board_heap: the agent does not run even with {high} bytes of heap")
            while high - low > step:  # invariant: high works; low is untested or fails
                mid = (low + high) // 2 // step * step
                ok = await trial(ctx, mid, Path(tmp)) is not None
                print(f"heapsize={mid}: {'ok' if ok else 'FAILS'}")
                high, low = (mid, low) if ok else (high, mid)
    finally:
        await ctx.shutdown()
    return full[0], full[1], high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--push-kb", type=float, default=10)
    parser.add_argument("--only32", action="store_true", help="the 32-bit figures only (what the heap test checks)")
    parser.add_argument("--min-heap", action="store_true", help="also bisect the virtual board's smallest heap")
    parser.add_argument("--low", type=int, default=16 * 1024)
    parser.add_argument("--high", type=int, default=256 * 1024)
    parser.add_argument("--step", type=int, default=1024)
    parser.add_argument("--verbose", action="store_true", help="show what the board prints")
    args = parser.parse_args()
    try:
        runs = harness.run_both(args.commands, args.push_kb, only32=args.only32, verbose=args.verbose)
    except harness.HarnessError as exc:
        raise SystemExit(f"board_heap: {exc}") from None
    for bits, f in runs.items():
        print(
            f"{bits}-bit: bare {f['bare_b']} B, stand-ins {f['standins_b'] - f['stdlib_b']} B (taken off); "
            f"boot {f['boot_b']} B ({f['boot_modules']} modules, {f['boot_mpy_b']} B of .mpy), after "
            f"{args.commands} commands {f['after_b']} B, push peak {f.get('push_peak_b')} B "
            f"({f.get('push_blocks')} blocks of {f.get('push_mpy_b')} B; "
            f"the blocks alone {f.get('push_block_peak_b')} B), "
            f"the role switch {f.get('push_switch_b')} B, after it {f.get('after_switch_b')} B"
            + ("" if "switch_restart" not in f else " (in place)" if not f["switch_restart"] else "")
            + (
                f" (it restarted: {f['restart_boot_b']} B after the boot into the new role, then a command)"
                if f.get("switch_restart")
                else ""
            )
        )
    if "64" in runs:
        r = {k: runs["32"][k] / runs["64"][k] for k in ("boot_b", "after_b")}
        print(f"32/64 ratio: boot {r['boot_b']:.3f}, after {r['after_b']:.3f}")
    for key, figure in (("boot", "boot_b"), ("after_1000", "after_b"), ("push_peak", "push_peak_b")):
        value, budget = runs["32"].get(figure), BUDGET[key]
        if value is not None:
            verdict = "fits" if value <= budget else f"OVER by {value - budget} B"
            print(f"heap32_{key}: {value} of {budget} B ({verdict})")
    if args.min_heap:
        boot, after, smallest = asyncio.run(_min_heap(args.low, args.high, args.step))
        print(
            f"virtual board (64-bit, plain): after boot {boot} B, after 100 commands {after} B, "
            f"smallest heap {smallest} B"
        )
    names = [("heap32", runs["32"])] + ([("heap64", runs["64"])] if "64" in runs else [])
    line = []
    for prefix, f in names:
        line += [f"{prefix}_boot_b={f['boot_b']}", f"{prefix}_after_{args.commands}_b={f['after_b']}"]
        if "push_peak_b" in f:
            line.append(f"{prefix}_push_peak_b={f['push_peak_b']}")
    line.append(f"boot_path_mpy_bytes={runs['32']['boot_mpy_b']}")
    print(" ".join(line))


if __name__ == "__main__":
    main()
