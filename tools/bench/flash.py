"""Flashing figures: bundle build time, esptool write time to a virtual board at two baud settings beside the
time the same (compressed) bytes would take on a real UART, and flash-to-online time through a real master.

    python tools/bench/flash.py [--runs 3] [--skip-online]

The base image is the tests' small MicroPython-like ESP32 image (pifleet/sim/firmware.py; no stock image
can be downloaded here) plus the 2 MiB littlefs bundle for the vfs partition. The virtual board is an erased
pifleet.sim VirtualBoard; esptool is the real one (its Python API, ROM loader, compressed write, MD5 verify).
The baseline is the wire time of the compressed bytes on a real UART at that baud: 10 bits per byte
(start + 8 data + stop), ignoring protocol overhead and the flash's erase/write time — a lower bound for real
hardware. A pty ignores the baud setting, so the virtual write time should barely depend on it.
Last line: name=value pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pifleet.boardfs import bundle, mpy  # noqa: E402
from pifleet.flashing import flasher  # noqa: E402
from pifleet.roles.presets import ROLES  # noqa: E402
from pifleet.sim import VirtualBoard  # noqa: E402
from pifleet.sim.firmware import build_image  # noqa: E402


def bundle_times(image: bytes, runs: int) -> tuple[float, float, bundle.Bundle]:
    mpy._compile_cache.clear()
    identity = bundle.Identity("esp32-bench0", "bench", "blind", b"\0" * 32)
    kw = dict(
        image=image,
        image_offset=0x1000,
        version="v1.24.1",
        flash_size=None,
        master=("127.0.0.1", 5683),
        wifi=("ssid", "psk"),
        caps=ROLES["blind"],
    )
    t = time.perf_counter()
    built = bundle.build(identity, **kw)
    cold = time.perf_counter() - t
    warm = []
    for _ in range(runs):
        t = time.perf_counter()
        bundle.build(identity, **kw)
        warm.append(time.perf_counter() - t)
    return cold, statistics.median(warm), built


def write_time(root: Path, baud: int, regions: list[tuple[int, bytes]], runs: int) -> tuple[float, int]:
    times, sent = [], 0
    for n in range(runs):
        board = VirtualBoard(f"bench-{baud}-{n}", root / f"b{baud}-{n}", erased=True)
        board.start()
        try:
            time.sleep(0.2)
            _, result = flasher.flash(board.serial_port, lambda info: regions, virtual=True, baud=baud)
            times.append(result.seconds)
            sent = result.bytes_sent
        finally:
            board.stop()
    return statistics.median(times), sent


def flash_to_online(root: Path, image: bytes) -> float:
    from pifleet.storage import postgres
    from tests.support.masters import MasterProcess
    from tests.support.waits import wait_until

    server = postgres.start_embedded(root / "pg")
    master = MasterProcess(root / "master", postgres.embedded_url(server, "bench_flash"))
    board = VirtualBoard("bench-online", root / "online", erased=True)
    try:
        master.start()
        r = master.post("/api/firmware", content=image, headers={"content-type": "application/octet-stream"})
        r.raise_for_status()
        board.start()
        wait_until(lambda: any(b["port"] == board.serial_port for b in master.get("/api/boards")), timeout=10)
        started = time.monotonic()
        job = master.post(
            "/api/flash", json={"port": board.serial_port, "name": "bench-online", "role": "blind"}
        ).json()
        wait_until(
            lambda: (d := master.device("bench-online")) and d["online"] and d["capabilities"],
            timeout=120,
            interval=0.02,
            what="the flashed board online",
        )
        elapsed = time.monotonic() - started
        state = master.get(f"/api/flash/{job['id']}")["state"]
        assert state == "done", state
        return elapsed
    finally:
        board.stop()
        master.stop()
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-online", action="store_true", help="Skip the flash-to-online run (needs PostgreSQL).")
    args = parser.parse_args()
    image = build_image("esp32", "v1.24.1")
    cold, warm, built = bundle_times(image, args.runs)
    print(
        f"bundle: {len(built.files)} files, littlefs {len(built.image)} bytes; build cold {cold:.3f} s "
        f"(mpy-cross {built.mpy_cross}), warm {warm:.3f} s"
    )
    regions = [(0x1000, image), (built.offset, built.image)]
    total = sum(len(d) for _, d in regions)
    figures = {"bundle_cold_s": cold, "bundle_s": warm, "bytes": total}
    with tempfile.TemporaryDirectory(prefix="pifleet-bench-flash-") as tmp:
        root = Path(tmp)
        for baud in (115200, 921600):
            seconds, sent = write_time(root, baud, regions, args.runs)
            uart = sent * 10 / baud
            print(
                f"baud {baud}: esptool write+verify {seconds:.3f} s for {total} bytes ({sent} sent compressed); "
                f"a real UART needs {uart:.3f} s for those bytes (x{uart / seconds:.1f})"
            )
            figures |= {f"write_{baud}_s": seconds, f"uart_{baud}_s": uart, "bytes_sent": sent}
        if not args.skip_online:
            online = flash_to_online(root, image)
            print(f"flash to online (API request until registered with capabilities): {online:.2f} s")
            figures["flash_to_online_s"] = online
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
