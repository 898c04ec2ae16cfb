"""USB board detection: serial ports with an ESP32-style USB bridge, plus virtual boards on the "USB bus".

Layer: service. Real ports come from pyserial's `list_ports.comports()`, the bridge named from VID:PID; virtual
boards announce themselves as RUNTIME/sim-ports/NAME.json (docs/flashing.md). `UsbWatcher.run()` looks once a
second and publishes "boards" on the event hub when the set of ports changes; `probe()` asks esptool about the
chip on one port (in a worker thread) and remembers the answer until the port goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from ..errors import NotFoundError
from ..events import EventHub
from ..runtime import pid_alive, runtime_dir
from . import flasher
from .model import ChipInfo, UsbBoard

log = logging.getLogger(__name__)

# VID -> {PID: bridge}; None as PID: any product of that vendor
BRIDGES: dict[int, dict[int | None, str]] = {
    0x10C4: {0xEA60: "CP210x", 0xEA70: "CP210x"},
    0x1A86: {0x7523: "CH340", 0x55D4: "CH9102", 0x55D3: "CH343"},
    0x0403: {0x6001: "FTDI", 0x6010: "FTDI", 0x6011: "FTDI", 0x6014: "FTDI", 0x6015: "FTDI"},
    0x303A: {None: "Espressif native USB"},
}


def bridge_name(vid: int | None, pid: int | None) -> str | None:
    """The USB-serial bridge of an ESP32 board from its VID:PID; None for anything else."""
    if vid is None:
        return None
    products = BRIDGES.get(vid)
    if products is None:
        return None
    return products.get(pid) or products.get(None)


def _alive(pid: object) -> bool:
    return pid_alive(pid) if isinstance(pid, int) and pid > 0 else True  # no pid given: trust the file


def virtual_ports(directory: Path | None = None) -> list[UsbBoard]:
    """Virtual boards whose runner is alive and whose port exists."""
    directory = directory or runtime_dir() / "sim-ports"
    boards = []
    for path in sorted(directory.glob("*.json")):
        try:
            info = json.loads(path.read_text())
            port = info["port"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
        if not _alive(info.get("pid")) or not (port.startswith(("socket://", "rfc2217://")) or Path(port).exists()):
            continue
        boards.append(
            UsbBoard(
                port=port,
                bridge="virtual",
                virtual=True,
                description=f"virtual {info.get('chip', 'ESP32')} {info.get('name', path.stem)}",
            )
        )
    return boards


def real_ports() -> list[UsbBoard]:
    """Serial ports with a known ESP32 USB bridge (other serial devices are left out)."""
    from serial.tools import list_ports

    boards = []
    for p in list_ports.comports():
        bridge = bridge_name(p.vid, p.pid)
        if bridge is None:
            continue
        boards.append(
            UsbBoard(
                port=p.device,
                bridge=bridge,
                vid=p.vid,
                pid=p.pid,
                description=p.description or "",
                serial_number=p.serial_number,
            )
        )
    return boards


def list_ports(sim_dir: Path | None = None) -> list[UsbBoard]:
    return real_ports() + virtual_ports(sim_dir)


class UsbWatcher:
    """The current USB boards, their probe results, and a 1 s watch loop."""

    def __init__(self, hub: EventHub, sim_dir: Path | None = None) -> None:
        self.hub = hub
        self.sim_dir = sim_dir
        self.boards: dict[str, UsbBoard] = {}
        self.probes: dict[str, ChipInfo] = {}
        self.probe_errors: dict[str, str] = {}
        self.busy: set[str] = set()  # ports esptool holds right now (probe or flash)

    async def scan(self) -> bool:
        """Look at the ports once; True when the set changed (and "boards" was published)."""
        boards = {b.port: b for b in await asyncio.to_thread(list_ports, self.sim_dir)}
        changed = set(boards) != set(self.boards) or any(
            (b.bridge, b.description) != (self.boards[p].bridge, self.boards[p].description)
            for p, b in boards.items()
            if p in self.boards
        )
        self.boards = boards
        for port in set(self.probes) - set(boards):
            self.probes.pop(port, None)
        for port in set(self.probe_errors) - set(boards):
            self.probe_errors.pop(port, None)
        if changed:
            log.info("USB boards: %s", ", ".join(f"{b.port} ({b.bridge})" for b in boards.values()) or "none")
            self.hub.publish("boards")
        return changed

    async def run(self, interval: float = 1.0) -> None:
        delay = interval
        while True:
            try:
                await self.scan()
                delay = interval
            except Exception:  # noqa: BLE001 - keep watching; a broken udev or pyserial must not stop it
                log.exception("USB scan failed; retrying")
                delay = min(delay * 2, 30)
            await asyncio.sleep(delay)

    def get(self, port: str) -> UsbBoard:
        board = self.boards.get(port)
        if board is None:
            known = ", ".join(self.boards) or "none"
            raise NotFoundError(f"no board on port {port!r} (USB boards now: {known})", field="port")
        return board

    async def probe(self, port: str) -> ChipInfo:
        """esptool's view of the chip on `port` (chip, MAC, flash size); remembered until the port goes."""
        if port not in self.boards:
            await self.scan()
        board = self.get(port)
        if port in self.busy:
            from ..errors import ConflictError

            raise ConflictError(f"port {port} is busy (a probe or flash is running)", field="port")
        self.busy.add(port)
        try:
            info = await asyncio.to_thread(flasher.probe, port, virtual=board.virtual)
        except flasher.FlashError as e:
            self.probe_errors[port] = e.detail
            self.hub.publish("boards")
            raise
        finally:
            self.busy.discard(port)
        self.remember(port, info)
        return info

    def remember(self, port: str, info: ChipInfo) -> None:
        self.probes[port] = info
        self.probe_errors.pop(port, None)
        self.hub.publish("boards")

    def snapshot(self) -> list[UsbBoard]:
        out = []
        for port, board in sorted(self.boards.items()):
            out.append(
                UsbBoard(
                    port=board.port,
                    bridge=board.bridge,
                    vid=board.vid,
                    pid=board.pid,
                    description=board.description,
                    serial_number=board.serial_number,
                    virtual=board.virtual,
                    probe=self.probes.get(port),
                    probe_error=self.probe_errors.get(port),
                )
            )
        return out
