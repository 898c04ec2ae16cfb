"""MicroPython's app image over the air to virtual boards: the master's transfer path, OSCORE, 512-byte blocks.

Measured: `Gateway.put_image` (PUT /ota, RFC 7959 Block1 in 512-byte blocks, each block OSCORE-protected and one
datagram; the board writes each block into its inactive OTA slot through esp32.Partition and hashes it as it goes,
micropython/agent/ota.py) of an app image of --size bytes, to one board, then to --boards boards at once, all
paired (OSCORE) with an in-process gateway. The boards are written with MicroPython's OTA layout (pifleet.sim
.firmware: partitions-4MiB-ota.csv, 1.5 MiB slots) and the agent's files on the vfs after ota_1; each transfer
ends with set_boot and the board's reset into the new image (whose confirmation is the rollout tests' part).
Baseline (same run): the one-board transfer; the ratio is what N boards at once cost against it. The board's
heap at the peak of an update on a 32-bit ESP32 comes from tools/bench/board_heap.py, not from here.

    python tools/bench/ota.py [--size 1560000] [--boards 20] [--heap32]

--heap32: instead, the board's heap at the peak of an update on a 32-bit MicroPython (tools/bench/heap32: the
wasm32 build, the paired blind board as flashing builds it, booted and registered; then PUT /ota in 512-byte
protected blocks, the peak read at each block as board_heap.py reads its push peak). esp32.Partition is C on a
board: here a stand-in that keeps nothing, measured and taken off like the harness's other stand-ins.

A 1.6 MB image does not fit MicroPython's 1.5 MiB (1,572,864-byte) OTA slot; the default is the largest round
size that does. Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "server"))

from pifleet.boardfs.layout import build_littlefs  # noqa: E402
from pifleet.gateway.coap import Gateway  # noqa: E402
from pifleet.runtime import free_udp_port  # noqa: E402
from pifleet.sim import VirtualBoard  # noqa: E402
from pifleet.sim.board import micropython_binary  # noqa: E402
from pifleet.sim.firmware import build_app, build_image  # noqa: E402
from pifleet.sim.flash import Flash  # noqa: E402

VFS = (0x310000, 0xF0000)


def ota_board(root: Path, name: str, n: int) -> VirtualBoard:
    board = VirtualBoard(
        name,
        root / name,
        role="blind",
        erased=True,  # its flash is written here, as flashing --ota would write it
        master=("127.0.0.1", 9),  # nobody: the bench measures the transfer, not the confirmation
        oscore_id=bytes([0x40, n]),
        lifetime=3600,
    )
    flash = Flash(board.flash_path, board.flash_size)
    flash.write(0x1000, build_image("esp32", "v1.24.1", ota=True))
    flash.write(VFS[0], build_littlefs(board.board_files(), VFS[1]))
    return board


async def transfer(gateway: Gateway, boards: list[VirtualBoard], app: bytes, sha: str) -> float:
    started = time.perf_counter()
    try:
        answers = await asyncio.gather(*(gateway.put_image(b.ip, b.listen_port, sha, app) for b in boards))
    except Exception:
        await asyncio.sleep(1)  # the console's last lines
        for board in boards:
            print(f"{board.name}:\n{board.console_text()[-1500:]}", file=sys.stderr)
        raise
    took = time.perf_counter() - started
    for board, answer in zip(boards, answers, strict=True):
        if not answer.get("ok"):
            raise SystemExit(f"{board.name}: {answer}")
    return took


ESP32_STANDIN = b"""
class Partition:
    RUNNING = 1
    BOOT = 0

    def __init__(self, id=1, label="ota_0"):
        self.label = label

    def get_next_update(self):
        return Partition(0, "ota_1" if self.label == "ota_0" else "ota_0")

    def info(self):
        return (0, 0x10, 0x10000, 0x180000, self.label, False)

    def readblocks(self, block, buf, offset=0):
        for i in range(len(buf)):
            buf[i] = 0

    def writeblocks(self, block, buf, offset=None):
        pass

    def ioctl(self, op, arg):
        return 0

    def set_boot(self):
        pass

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        pass
"""


def heap32(blocks: int) -> dict[str, int]:
    """The 32-bit board's heap: after boot, and at the peak of an update of `blocks` blocks."""
    sys.path.insert(0, str(ROOT / "tools" / "bench"))
    from heap32 import harness

    interp, root = harness.wasm32()
    try:
        interp.put(
            "/lib/esp32.mpy", harness.compile_mpy(harness.mpy_cross_for(harness.VERSION), ESP32_STANDIN, "esp32.py")
        )
        before = interp.heap()
        interp.run("import esp32")
        standin = interp.heap() - before
        figures = harness.measure(interp, root, commands=0, push_kb=0, log=lambda *a: None)
        harness_b = figures["standins_b"] - figures["stdlib_b"] + standin
        master = harness.Master(interp)  # a fresh sender: the one inside measure() sent no request
        app = build_app("esp32", "v1.25.0", size=blocks * 512)
        sha = hashlib.sha256(app).hexdigest()
        highs = master.put_blocks("ota", app, query=(f"sha={sha}",))
        return {
            "boot_b": figures["boot_b"] - standin,
            "ota_peak_b": max(highs) - harness_b,
            "ota_first_block_b": highs[0] - harness_b,
            "ota_blocks": len(highs),
        }
    finally:
        interp.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_560_000, help="app image bytes (default 1,560,000)")
    parser.add_argument("--boards", type=int, default=20, help="boards at once (default 20)")
    parser.add_argument("--heap32", action="store_true", help="the 32-bit heap at the peak of an update instead")
    args = parser.parse_args()
    if args.heap32:
        h = heap32(blocks=40)
        print(
            f"32-bit board: {h['boot_b']} B after boot, {h['ota_peak_b']} B at the peak of an update "
            f"({h['ota_peak_b'] - h['boot_b']:+d} B; first block {h['ota_first_block_b']} B; {h['ota_blocks']} blocks)"
        )
        print(f"heap32_boot_b={h['boot_b']} heap32_ota_peak_b={h['ota_peak_b']}")
        return
    if micropython_binary() is None:
        raise SystemExit("ota: no MicroPython unix port here")
    app = build_app("esp32", "v1.25.0", size=args.size)
    sha = hashlib.sha256(app).hexdigest()
    blocks = -(-len(app) // 512)
    with tempfile.TemporaryDirectory(prefix="ota-bench-") as tmp:
        port = free_udp_port()
        gateway = Gateway("127.0.0.1", port, keys_dir=Path(tmp) / "keys")
        # the boards are paired here and register nowhere (below): no registry is asked
        await gateway.start(SimpleNamespace(states=None))
        boards = [ota_board(Path(tmp), f"ota-{n:02d}", n) for n in range(args.boards + 1)]
        try:
            for board in boards:
                board.start()
            for board in boards:
                await board.wait_ready_async(60)
                gateway.pair(board.device_id, board.oscore_id, board.secret, board.ip, board.listen_port)
            one = await transfer(gateway, boards[:1], app, sha)  # the baseline: one board alone
            many = await transfer(gateway, boards[1:], app, sha)
        finally:
            for board in boards:
                board.kill()
            await gateway.stop()
    print(
        f"one board: {len(app)} bytes in {blocks} blocks of 512 (OSCORE) in {one:.1f} s "
        f"({one / blocks * 1000:.2f} ms a block, {len(app) / one / 1024:.0f} KiB/s)"
    )
    print(
        f"{args.boards} boards at once: {many:.1f} s for all ({many / one:.2f} x one board; "
        f"{len(app) * args.boards / many / 1024:.0f} KiB/s in total)"
    )
    print(
        f"ota_image_b={len(app)} ota_blocks={blocks} ota_one_s={one:.2f} ota_ms_per_block={one / blocks * 1000:.2f} "
        f"ota_{args.boards}_s={many:.2f} ota_{args.boards}_ratio={many / one:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
