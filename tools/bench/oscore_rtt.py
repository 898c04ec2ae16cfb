"""A command's round trip with and without OSCORE, through the master's gateway, and what OSCORE costs the
board's heap.

Two virtual blind boards (the real agent in the real MicroPython unix port): one plain, one paired for OSCORE
(its keys given to the gateway the way flashing gives them: gateway.pair). Both get `blind.stop` through
`Gateway.command(...)`, the path every job takes, in alternating blocks, each command with a fresh execution
id. The baseline is the plain board in the same run. The heap figure is `mem_alloc` from each board's /stats
after the commands (OSCORE's modules, context and buffers are what differs).

    python tools/bench/oscore_rtt.py [--count 500] [--block 50]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pifleet.gateway.coap import Gateway
from pifleet.runtime import free_udp_port
from pifleet.sim import VirtualBoard


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]


async def main(count: int, block: int) -> None:
    with tempfile.TemporaryDirectory(prefix="oscore-rtt-") as tmp:
        gateway = Gateway("127.0.0.1", free_udp_port(), keys_dir=Path(tmp) / "keys")
        await gateway.start(None)
        dead_master = ("127.0.0.1", free_udp_port())  # nothing needs registering
        plain = VirtualBoard("rtt-plain", Path(tmp) / "plain", role="blind", master=dead_master)
        secure = VirtualBoard("rtt-oscore", Path(tmp) / "oscore", role="blind", master=dead_master, oscore_id=b"\x01")
        for board in (plain, secure):
            board.start()
        try:
            for board in (plain, secure):
                await board.wait_ready_async()
            gateway.pair(secure.device_id, b"\x01", secure.secret, secure.ip, secure.listen_port)
            seq = 0

            async def one(board: VirtualBoard) -> float:
                nonlocal seq
                seq += 1
                start = time.perf_counter()
                await gateway.command(
                    board.device_id, board.ip, board.listen_port, "blind", "stop", f"e{seq}", {}, 10.0
                )
                return time.perf_counter() - start

            samples: dict[str, list[float]] = {"plain": [], "oscore": []}
            for _ in range(20):  # warm-up (the first OSCORE request meets the board's Echo challenge)
                await one(plain)
                await one(secure)
            while len(samples["oscore"]) < count:
                for name, board in (("plain", plain), ("oscore", secure)):
                    for _ in range(min(block, count - len(samples[name]))):
                        samples[name].append(await one(board))
            heap = {}  # GET /stats: protected for the paired board, as everything the gateway sends it
            for name, board in (("plain", plain), ("oscore", secure)):
                heap[name] = (await gateway.stats(board.ip, board.listen_port))["mem_alloc"]
        finally:
            for board in (plain, secure):
                await board.stop_async(timeout=5)
            await gateway.stop()
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    tail = {k: p99(v) * 1000 for k, v in samples.items()}
    for name in ("plain", "oscore"):
        print(
            f"{name:>6}: n={len(samples[name])} median {med[name]:.3f} ms, p99 {tail[name]:.3f} ms, "
            f"board heap {heap[name]} B"
        )
    print(
        f"plain_median_ms={med['plain']:.3f} oscore_median_ms={med['oscore']:.3f} "
        f"plain_p99_ms={tail['plain']:.3f} oscore_p99_ms={tail['oscore']:.3f} "
        f"ratio_median={med['oscore'] / med['plain']:.2f} heap_plain={heap['plain']} heap_oscore={heap['oscore']} "
        f"heap_cost={heap['oscore'] - heap['plain']} count={count}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.block))
