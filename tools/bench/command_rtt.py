"""Round-trip time of a command through the master's CoAP gateway, against bare aiocoap to the same board.

Measured: `Gateway.command(...)` (pifleet.gateway.coap), the path every job takes to a board — URI building,
msgspec encode/decode, answer checking, timeout wrapping — on the gateway's own server context.
Baseline, in the same run: the same POST /a/blind/stop with the same JSON body from a plain
`aiocoap.Context.create_client_context()`. Both talk to one virtual blind board (the real agent in the real
MicroPython unix port), in alternating blocks so both see the same conditions; every command has a fresh
execution id, so the board runs each one (no duplicate answers). The board's master is a dead port: commands
need no registration, and the gateway then needs no registry (nothing registers with it).

    python tools/bench/command_rtt.py [--count 1000] [--block 50]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from pifleet.gateway.coap import Gateway
from pifleet.runtime import free_udp_port
from pifleet.sim import VirtualBoard
from pifleet.sim.board import micropython_binary

TIMEOUT_S = 10.0
WARMUP = 20


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


class Bench:
    def __init__(self, gateway: Gateway, client: aiocoap.Context, board: VirtualBoard) -> None:
        self.gateway, self.client, self.board = gateway, client, board
        self.uri = f"coap://{board.ip}:{board.listen_port}/a/blind/stop"
        self.seq = 0

    def _eid(self, kind: str) -> str:
        self.seq += 1
        return f"{kind}{self.seq}"

    async def via_master(self) -> float:
        eid = self._eid("m")
        start = time.perf_counter()
        await self.gateway.command(
            device_id=self.board.device_id,
            address=self.board.ip,
            port=self.board.listen_port,
            capability="blind",
            command="stop",
            eid=eid,
            params={},
            timeout=TIMEOUT_S,
        )
        return time.perf_counter() - start

    async def raw(self) -> float:
        # the same body the gateway sends (with "ep", the board the command is meant for)
        body = json.dumps({"eid": self._eid("r"), "ep": self.board.device_id, "params": {}}).encode()
        start = time.perf_counter()
        msg = aiocoap.Message(code=Code.POST, uri=self.uri, payload=body, content_format=ContentFormat.JSON)
        response = await asyncio.wait_for(self.client.request(msg).response, TIMEOUT_S)
        elapsed = time.perf_counter() - start
        if response.code != Code.CHANGED:
            raise SystemExit(f"command_rtt: the board answered {response.code}: {response.payload[:200]!r}")
        return elapsed


def summary(name: str, samples: list[float]) -> tuple[float, float]:
    median, p99 = statistics.median(samples) * 1000, percentile(samples, 99) * 1000
    print(
        f"{name:>7}: n={len(samples)} median {median:.3f} ms, p99 {p99:.3f} ms, "
        f"min {min(samples) * 1000:.3f} ms, max {max(samples) * 1000:.3f} ms"
    )
    return median, p99


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="commands per path (default 1000)")
    parser.add_argument("--block", type=int, default=50, help="commands per block before switching path")
    args = parser.parse_args()
    if args.count < 1 or args.block < 1:
        parser.error("--count and --block must be positive")
    if micropython_binary() is None:
        print("command_rtt: no MicroPython unix port here; the board runs the agent under CPython")

    gateway = Gateway("127.0.0.1", free_udp_port())
    await gateway.start(None)  # the registry is only reached by registrations, and none arrive here
    client = await aiocoap.Context.create_client_context()
    with tempfile.TemporaryDirectory(prefix="command-rtt-") as tmp:
        board = VirtualBoard("rtt-blind", Path(tmp) / "board", role="blind", master=("127.0.0.1", free_udp_port()))
        board.start()
        try:
            await board.wait_ready_async()
            bench = Bench(gateway, client, board)
            for _ in range(WARMUP):
                await bench.via_master()
                await bench.raw()
            master: list[float] = []
            raw: list[float] = []
            first_master = True
            while len(master) < args.count or len(raw) < args.count:
                # Alternate whole blocks, and alternate which path leads a pair of blocks.
                order = ((master, bench.via_master), (raw, bench.raw))
                for samples, run in order if first_master else reversed(order):
                    for _ in range(min(args.block, args.count - len(samples))):
                        samples.append(await run())
                first_master = not first_master
        finally:
            await board.stop_async(timeout=5)
    await client.shutdown()
    await gateway.stop()

    m_median, m_p99 = summary("master", master)
    r_median, r_p99 = summary("raw", raw)
    print(
        f"master_median_ms={m_median:.3f} master_p99_ms={m_p99:.3f} raw_median_ms={r_median:.3f} "
        f"raw_p99_ms={r_p99:.3f} ratio_median={m_median / r_median:.2f} ratio_p99={m_p99 / r_p99:.2f} "
        f"count={args.count}"
    )


if __name__ == "__main__":
    asyncio.run(main())
