"""Virtual chips on the "USB bus" for the flashing tests, run in the test process.

`UsbChip` is the sim's ROM-loader chip (pifleet.sim.chip.Chip, real esptool protocol on a pty) announced in
RUNTIME/sim-ports/ like a virtual board, so the master under test lists it and flashes it with real esptool.
`DeafPort` is a port where nothing answers (a board not in download mode); `CutPort` forwards to a chip and
vanishes after a number of bytes (the cable pulled mid-write); `WornFlash` keeps one bit from being written
(a flash that fails its verify).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from pathlib import Path

from pifleet.flashing.usb import runtime_dir
from pifleet.sim.chip import Chip
from pifleet.sim.flash import Flash, board_mac


def announce(name: str, port: str, mac: bytes) -> Path:
    path = runtime_dir() / "sim-ports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"port": port, "name": name, "chip": "ESP32", "mac": mac.hex(":"), "pid": os.getpid()}))
    os.replace(tmp, path)
    return path


class WornFlash(Flash):
    """Flash where one byte never takes the value written (stays erased): a verify mismatch."""

    bad_offset = 0x200000 + 5

    def write(self, offset: int, data: bytes) -> None:
        if offset <= self.bad_offset < offset + len(data):
            data = bytearray(data)
            data[self.bad_offset - offset] ^= 0x01
            data = bytes(data)
        super().write(offset, data)


class UsbChip:
    def __init__(self, name: str, root: Path, flash_cls: type[Flash] = Flash) -> None:
        self.name = f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        root.mkdir(parents=True, exist_ok=True)
        self.flash_path = root / "flash.bin"
        self.flash = flash_cls(self.flash_path)
        self.mac = board_mac(self.name)
        self.chip = Chip(self.name, self.flash, self.mac, root / "console.log", self._spawn)
        self.chip.start()
        self.chip.power_on()
        self.port = self.chip.port
        self.announcement = announce(self.name, self.port, self.mac)

    @property
    def mac_text(self) -> str:
        return self.mac.hex(":")

    def _spawn(self, fd: int) -> subprocess.Popen:
        # The firmware stand-in: these tests look at what was written and that the chip booted it.
        return subprocess.Popen(["sleep", "600"], stdin=fd, stdout=fd, stderr=fd)

    def read(self, offset: int, size: int) -> bytes:
        return self.flash_path.read_bytes()[offset : offset + size]

    def close(self) -> None:
        self.announcement.unlink(missing_ok=True)
        if self.chip.proc is not None and self.chip.proc.poll() is None:
            self.chip.proc.kill()
            self.chip.proc.wait()
        try:
            self.chip.close()
        except TypeError:  # Chip._stop shadows threading.Thread._stop in join(); the thread ends anyway
            pass


class DeafPort:
    """A pty nobody answers on: esptool's sync never gets a reply."""

    def __init__(self, name: str) -> None:
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        os.close(slave)
        self.name = f"{name}-{os.getpid()}"
        self.announcement = announce(self.name, self.port, b"\x02\x00\x00\x00\x00\x01")
        self._stop = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    os.read(self.master, 4096)
                except OSError:  # EIO while nobody has the port open: no event marks an open, so back off
                    time.sleep(0.05)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.announcement.unlink(missing_ok=True)
        os.close(self.master)


class CutPort:
    """A port in front of a UsbChip that vanishes (pty closed, announcement gone) after `cut_after` bytes from
    esptool — the cable pulled during the write. Until then it forwards both ways."""

    def __init__(self, chip: UsbChip, cut_after: int) -> None:
        self.chip = chip
        self.cut_after = cut_after
        self.master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)
        self.name = chip.name + "-cut"
        self.inner = os.open(chip.port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.inner)
        self.announcement = announce(self.name, self.port, chip.mac)
        self.seen = 0
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while not self.cut.is_set():
            r, _, _ = select.select([self.master, self.inner], [], [], 0.1)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    if fd == self.master:
                        time.sleep(0.02)  # nobody has the port open yet, and no event marks an open: back off
                    continue
                if fd == self.master:
                    self.seen += len(data)
                    if self.seen > self.cut_after:
                        self._unplug()
                        return
                    os.write(self.inner, data)
                else:
                    os.write(self.master, data)

    def _unplug(self) -> None:
        self.cut.set()
        self.announcement.unlink(missing_ok=True)
        os.close(self.master)
        os.close(self.inner)

    def close(self) -> None:
        if not self.cut.is_set():
            self.cut.set()
            self.thread.join(2)
            self.announcement.unlink(missing_ok=True)
            os.close(self.master)
            os.close(self.inner)
