"""The virtual chip: UART0 as a pty that is the ROM loader in download mode and the MicroPython console
otherwise, and the boot from flash.

Layer: sim (CPython, one thread per board). It owns the outer pty (what esptool and mpremote open), the flash
file, and the interpreter process it starts on every boot, which gets an inner pty as its terminal — so its
REPL sees a tty and Ctrl-C from mpremote becomes SIGINT (KeyboardInterrupt) through the line discipline, as
the unix port expects. Console output goes to the port (dropped while nobody reads it, like a UART) and to
io/console.log.

Resets, since a pty has no DTR/RTS lines (esptool warns "Chip was NOT reset" and goes on):
- download mode is entered when a SLIP SYNC frame arrives while the firmware runs — what the auto-reset
  circuit would do when esptool pulses DTR/RTS before syncing; the running interpreter is cut off (a reset);
- the firmware is started again when esptool asks for it on the wire (ROM FLASH_END "run user code", stub
  RUN_USER_CODE) or when esptool closes the port after a download-mode session — its default `--after
  hard-reset` pulse on EN — unless it sent the stub back to the ROM (`--after no-reset`), then the chip
  stays in download mode.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import subprocess
import termios
import threading
import time
import traceback
import tty
from pathlib import Path
from typing import Callable

from esptool.bin_image import LoadFirmwareImage

from pifleet.boardfs.layout import (
    APP,
    DATA,
    TABLE_OFFSET,
    LayoutError,
    Partition,
    find_app,
    find_vfs,
    parse_partition_table,
)
from pifleet.sim.firmware import (
    ABORTED,
    INVALID,
    NEW,
    NO_AGENT_MARK,
    PENDING_VERIFY,
    VALID,
    active_select,
    app_version,
    parse_select,
    select_crc,
    select_entry,
)
from pifleet.sim.flash import SECTOR, Flash
from pifleet.sim.rom import RomLoader, SlipDecoder, is_sync

logger = logging.getLogger(__name__)

BOOTLOADER_OFFSET = 0x1000  # ESP32: the second-stage bootloader the ROM loads
OFF, DOWNLOAD, RUNNING, HALTED = "off", "download", "running", "halted"
UNIX_PORT_MICROPYTHON = "1.29.0"  # what the firmware process runs (board.SIM_MICROPYTHON; board imports this module)

# How the interpreter ends when the firmware resets the chip (micropython/shims/machine.py): by SIGUSR2 for
# machine.reset(), by SIGUSR1 for the watchdog. The chip then boots again, as an ESP32 does. Any other end (Ctrl-C
# at the unix port's REPL, a crash of the interpreter itself) leaves the chip as it is.
MACHINE_RESET = -signal.SIGUSR2
WATCHDOG_RESET = -signal.SIGUSR1
RESETS = {MACHINE_RESET: "soft", WATCHDOG_RESET: "wdt"}


_IN_OPEN = 0x20  # inotify: the file was opened


def _watch_opens(path: str) -> int | None:
    """An inotify descriptor that becomes readable when someone opens `path` (Linux); None where there is none.
    A chip whose port nobody has open waits on it, instead of looking at the port 20 times a second (fifty boards'
    chip threads took a tenth of a core doing that)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), _IN_OPEN) < 0:
        os.close(fd)
        return None
    return fd


# The REPL prompts at which Ctrl-D is a soft reset: the raw REPL's, and the friendly one's (an empty line).
_PROMPTS = (b"CTRL-B to exit\r\n>", b"CTRL-B to exit\n>", b">>> ")


def _raw(fd: int, isig: bool = False) -> None:
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    if isig:
        attrs[3] |= termios.ISIG  # Ctrl-C interrupts a running program (the REPL turns this off itself)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class Chip(threading.Thread):
    """One virtual ESP32: power(), and the port lives until close()."""

    def __init__(
        self,
        name: str,
        flash: Flash,
        mac: bytes,
        console_path: Path,
        spawn: Callable[[int], subprocess.Popen],
        *,
        loader_enabled: bool = True,
    ) -> None:
        super().__init__(name=f"chip-{name}", daemon=True)
        self.board_name = name
        self.flash = flash
        self.mac = mac
        self.console_path = console_path
        self.spawn = spawn  # (inner pty slave fd[, soft=True]) -> the interpreter process (the firmware)
        self.loader_enabled = loader_enabled
        self.state = OFF
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        # why the firmware last started: "power" at power-on, "soft" after machine.reset(), "wdt" after the
        # watchdog (the shim's machine.reset_cause() reads it from PIFLEET_SIM_RESET_CAUSE); every reset so far
        self.reset_cause = "power"
        self.resets: list[str] = []
        self.running: tuple[str, str] | None = None  # (partition label, app version) the bootloader started
        self._master, slave = os.openpty()
        _raw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)  # the port is "unplugged" until someone opens it; its close is how esptool resets
        self._opens = _watch_opens(self.port)  # readable when someone opens the port (None: look every 50 ms)
        os.set_blocking(self._master, False)
        self._inner: int | None = None
        self._out = bytearray()  # to the port, not yet taken by the reader
        self._slip = SlipDecoder()
        self._hold = bytearray()  # bytes of a possible SYNC frame, held back from the firmware
        self._loader: RomLoader | None = None
        self._port_open = False
        self._cr = False  # the last console byte was "\r"
        self._tail = b""  # the end of the console output, to see the raw REPL's prompt
        self._soft = False  # the next boot is a soft reset into the raw REPL (boot.py only, as the port does)
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()
        self._pending: list[str] = []  # power/reset requests from other threads
        self._closing = False
        self._console = open(console_path, "ab", buffering=0)
        # machine.WDT's feeds (micropython/shims/machine.py): the file's content is its timeout in ms, its time of
        # last change the last feed; the chip is the watchdog, as the ESP32's is hardware
        self._wdt = console_path.parent / "wdt"
        self._wdt_timeout: float | None = None  # s, once the firmware started its watchdog

    # -- requests from other threads --------------------------------------------------------------

    def _request(self, what: str) -> None:
        with self._lock:
            self._pending.append(what)
        os.write(self._wake_w, b"x")

    def power_on(self) -> None:
        self._request("boot")

    def close(self) -> None:
        """End the chip thread; the caller has already stopped the firmware."""
        self._closing = True
        os.write(self._wake_w, b"x")
        self.join(5)
        for fd in (self._master, self._wake_r, self._wake_w, self._opens):
            if fd is not None:
                os.close(fd)
        if self._inner is not None:
            os.close(self._inner)
            self._inner = None
        self._console.close()

    # -- console ------------------------------------------------------------------------------------

    def console(self, data: bytes) -> None:
        self._console.write(data)
        self._to_port(data)

    def _to_port(self, data: bytes) -> None:
        if self._port_open:
            self._out += data
            if len(self._out) > 1 << 20 and self.state != DOWNLOAD:
                del self._out[:-65536]  # a UART drops what nobody reads

    # -- boot ---------------------------------------------------------------------------------------

    def _soft_reset(self, raw: bool = True) -> None:
        """Ctrl-D at a REPL prompt: the ESP32 port soft-reboots. At the raw REPL's prompt (mpremote does it before
        exec) it runs boot.py and comes back in the raw REPL; at the friendly `>>> ` prompt it runs boot.py and
        main.py — the agent starts again. The unix port has no soft reset (Ctrl-D ends it), so the chip does it."""
        self._end_firmware()
        self.console(b"MPY: soft reboot\r\n")
        self._soft = raw
        self._boot(soft=raw, reset_line=False)

    def _boot(self, soft: bool = False, reset_line: bool = True) -> None:
        self._end_firmware()
        self._loader = None
        self.boots += 1
        if reset_line:  # power-on, or the EN pin (esptool's reset): the ROM says POWERON_RESET either way
            self.reset_cause = "power"
            self.console(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")
        header = self.flash.read(BOOTLOADER_OFFSET, 4)
        if header[0] != 0xE9:
            return self._halt(f"invalid header: 0x{int.from_bytes(header, 'little'):08x}\n")
        try:
            parts = parse_partition_table(self.flash.read(TABLE_OFFSET, 0xC00))
        except LayoutError as e:
            return self._halt(f"E (boot) partition table: {e}\n")
        app = self._select_app(parts)
        if app is None:
            if not any(p.type == APP for p in parts):
                return self._halt("E (boot) no bootable app partition in the partition table\n")
            header = self.flash.read((find_app(parts) or parts[0]).offset, 4)
            return self._halt(f"invalid header: 0x{int.from_bytes(header, 'little'):08x}\n")
        if find_vfs(parts) is None and max(p.end for p in parts) >= self.flash.size:
            self.console(b"W (boot) no vfs partition: MicroPython runs without a filesystem\n")
        self._app_started(app)
        self._wdt.unlink(missing_ok=True)  # a watchdog runs from the start that creates it
        self._wdt_timeout = None
        inner, slave = os.openpty()
        _raw(slave, isig=True)
        os.set_blocking(inner, False)
        self._inner = inner
        try:
            self.proc = self.spawn(slave, True) if soft else self.spawn(slave)
        finally:
            os.close(slave)
        self.state = RUNNING
        self._tail = b""
        if soft:
            os.write(inner, b"\x01")  # back to the raw REPL once the interpreter reads its terminal

    # -- the second-stage bootloader (ESP-IDF's bootloader_utility.c, app rollback enabled) --------------------

    def _select_app(self, parts: list[Partition]) -> Partition | None:
        """The app partition the bootloader starts: with an `otadata` partition and OTA slots, the one its valid
        entry with the higher sequence number selects — after turning an entry still in pending-verify (its app
        booted once and never confirmed) into aborted, which is the rollback; a new entry becomes pending-verify.
        Without OTA data: factory, else ota_0. An image that does not verify is skipped for the next candidate."""
        otadata = next((p for p in parts if p.type == DATA and p.subtype == 0x00), None)
        slots: list[Partition] = []
        while (slot := next((p for p in parts if p.type == APP and p.subtype == 0x10 + len(slots)), None)) is not None:
            slots.append(slot)
        factory = next((p for p in parts if p.type == APP and p.subtype == 0x00), None)
        if otadata is None or not slots:
            candidates = [p for p in (factory, *slots) if p is not None]
            return next((p for p in candidates if self._verify(p)), None)
        entries = [parse_select(self.flash.read(otadata.offset + n * SECTOR, 32)) for n in (0, 1)]
        for n, (seq, state, crc) in enumerate(entries):
            if state == PENDING_VERIFY:
                self.console(b"W (boot) otadata[%d]: the app did not confirm itself: ABORTED (rollback)\r\n" % n)
                entries[n] = (seq, ABORTED, crc)
                self._write_select(otadata, n, entries[n])
        initial = False
        invalid = [seq == 0xFFFFFFFF or state in (INVALID, ABORTED) for seq, state, _ in entries]
        if all(invalid):
            index = None if factory is not None else 0
            initial = factory is None and all(seq == 0xFFFFFFFF or crc != select_crc(seq) for seq, _, crc in entries)
        else:
            active = active_select(entries)
            index = None
            if active >= 0:
                seq, state, crc = entries[active]
                index = (seq - 1) % len(slots)
                if state == NEW:
                    entries[active] = (seq, PENDING_VERIFY, crc)
                    self._write_select(otadata, active, entries[active])
        # as load_boot_image(): the selected slot, then the slots below it, then those above, then factory
        order = [] if index is None else [index, *range(index - 1, -1, -1), *range(index + 1, len(slots))]
        candidates = [slots[n] for n in order] + ([factory] if factory is not None else [])
        if index is None and factory is None:
            candidates = slots
        for part in candidates:
            if self._verify(part):
                if initial and part in slots:  # set_actual_ota_seq(): erased otadata learns what booted
                    self._write_select(otadata, 0, (slots.index(part) + 1, VALID, None))
                return part
            what = b"E (boot) %s at 0x%x: no valid app image, trying the next\r\n"
            self.console(what % (part.label.encode(), part.offset))
        return None

    def _write_select(self, otadata: Partition, sector: int, entry: tuple) -> None:
        """write_otadata(): erase the entry's sector, write the 32 bytes."""
        seq, state, crc = entry
        self.flash.erase(otadata.offset + sector * SECTOR, SECTOR)
        self.flash.write(otadata.offset + sector * SECTOR, select_entry(seq, state, crc))

    def _verify(self, part: Partition) -> bool:
        """The app image's header, checksum and appended SHA-256, as the bootloader checks before it loads it.
        (The headers provision() writes for tests that do not test flashing have no segments: header only.)"""
        head = self.flash.read(part.offset, 24)
        if head[0] != 0xE9:
            return False
        if head[1] == 0:
            return True
        try:
            image = LoadFirmwareImage("esp32", self.flash.read(part.offset, part.size))
        except Exception:  # noqa: BLE001 — esptool raises several kinds for a damaged image
            return False
        if image.checksum != image.calculate_checksum():
            return False
        return not getattr(image, "append_digest", False) or image.stored_digest == image.calc_digest

    def _app_started(self, app: Partition) -> None:
        """What the second-stage bootloader and the app's start-up say, and what the firmware learns of its own
        start: FLASH.run holds the partition's offset (esp_ota_get_running_partition, from the MMU mapping on a
        real chip) and its version (esp_app_get_description); `no-agent` marks build_app(no_agent=True)."""
        head = self.flash.read(app.offset, 0x1000)
        version = app_version(head) or "?"
        self.running = (app.label, version)
        self.console(
            b"I (boot) Loaded app from partition at offset 0x%x (%s)\r\nI (app_init) App version:      %s\r\n"
            % (app.offset, app.label.encode(), version.encode())
        )
        mark = " no-agent" if NO_AGENT_MARK in head else ""
        Path(str(self.flash.path) + ".run").write_text(f"{app.offset} {version}{mark}\n")
        self._shim_cache()

    def _shim_cache(self) -> None:
        """The esp32 shim's OTA half (micropython/shims/_simota.py) as .mpy in FLASH_DIR/sim/: the ESP32 port has
        that code in C, outside the Python heap; compiled from source on the board it would take the compiler's
        peak from a heap that is sized like a real board's. Without mpy-cross the shim compiles it itself."""
        target = self.flash.path.parent / "sim" / "_simota.mpy"
        if target.exists():
            return
        try:
            from pifleet import resources
            from pifleet.boardfs.mpy import compile_mpy, mpy_cross_for

            source = (resources.agent() / "shims" / "_simota.py").read_bytes()
            data = compile_mpy(mpy_cross_for(UNIX_PORT_MICROPYTHON), source, "_simota.py")
        except Exception:  # noqa: BLE001 — mpy-cross missing or failing: the source is the fallback
            logger.debug("chip %s: no _simota.mpy", self.board_name, exc_info=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def _reset_by_firmware(self, code: int) -> None:
        """machine.reset() or the watchdog ended the interpreter: the chip boots again, as an ESP32 does (the
        ROM prints its reset reason first). The next boot's machine.reset_cause() says which it was."""
        self.reset_cause = RESETS[code]
        self.resets.append(self.reset_cause)
        reason = b"TG1WDT_SYS_RESET" if self.reset_cause == "wdt" else b"SW_CPU_RESET"
        code = 0x11 if self.reset_cause == "wdt" else 0xC
        self.console(b"\r\nrst:0x%x (%s),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n" % (code, reason))
        self._end_firmware()
        time.sleep(0.2)  # an ESP32 takes about this long from its reset to MicroPython; no busy crash loop here
        self._boot(reset_line=False)

    def _halt(self, line: str) -> None:
        self.console(line.encode())
        self.state = HALTED

    def _end_firmware(self) -> None:
        """A reset: the interpreter is cut off at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._inner is not None:
            self._drain_inner()
            os.close(self._inner)
            self._inner = None

    def _enter_download(self) -> None:
        self._end_firmware()
        self.state = DOWNLOAD
        self._loader = RomLoader(self.flash, self.mac)
        self._slip = SlipDecoder()

    # -- the loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 — a dead chip thread must say why, in its console too (tests show it)
            logger.exception("virtual chip %s failed", self.board_name)
            with contextlib.suppress(OSError, ValueError):
                self._console.write(f"\nvirtual chip failed:\n{traceback.format_exc()}".encode())

    def _loop(self) -> None:
        poller = select.poll()
        while not self._closing:
            with self._lock:
                pending, self._pending = self._pending, []
            for what in pending:
                if what == "boot":
                    self._boot()
            hup = self._check_port()
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            if not hup:
                poller.register(self._master, select.POLLIN | (select.POLLOUT if self._out else 0))
            elif self._opens is not None:
                poller.register(self._opens, select.POLLIN)  # an open since the look above is queued there
            if self._inner is not None:
                poller.register(self._inner, select.POLLIN)
            wait_ms = 50 if hup and self._opens is None else 500
            left = self._watchdog()
            if left is not None:
                wait_ms = min(wait_ms, int(left * 1000) + 1)
            events = poller.poll(wait_ms)
            for fd, event in events:
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
                elif fd == self._opens:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._opens, 4096)
                elif fd == self._inner:
                    self._drain_inner()
                elif fd == self._master:
                    if event & select.POLLIN:
                        self._read_port()
                    if event & select.POLLOUT and self._out:
                        self._write_port()
            if self.proc is not None and self.state == RUNNING and self.proc.poll() is not None:
                self._drain_inner()
                if self.proc.returncode in RESETS and not self._closing:
                    self._reset_by_firmware(self.proc.returncode)
                elif self._inner is not None:
                    # any other end (a crash, a signal from outside) leaves the chip as it is; its terminal says
                    # nothing more, and its hang-up no longer wakes the loop (it spun at 100 % CPU on it)
                    os.close(self._inner)
                    self._inner = None

    def _watchdog(self) -> float | None:
        """Seconds until the firmware's watchdog fires (None: it runs none, or fired); fires it when due: the line
        the port's task watchdog would print, and the interpreter ends by SIGUSR1 (WATCHDOG_RESET), which the loop
        then sees as a watchdog reset."""
        if self.state != RUNNING or self.proc is None or self.proc.poll() is not None:
            return None
        try:
            if self._wdt_timeout is None:
                self._wdt_timeout = int(self._wdt.read_text()) / 1000
            fed = self._wdt.stat().st_mtime
        except (OSError, ValueError):
            return None  # none started yet (or its first write is under way)
        left = self._wdt_timeout - (time.time() - fed)
        if left > 0:
            return left
        self.console(b"WDT: not fed for %d ms, resetting\r\n" % round(self._wdt_timeout * 1000))
        self._wdt.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        return None

    def _check_port(self) -> bool:
        """Track whether someone has the port open; a close after a download session resets the chip."""
        hup = bool(self._poll_master() & select.POLLHUP)
        if hup and self._port_open:
            self._port_open = False
            self._out.clear()
            if self.state == DOWNLOAD and self._loader is not None and not self._loader.stay:
                logger.debug(
                    "chip %s: port closed after download mode: reset (esptool --after hard-reset)", self.board_name
                )
                self._boot()
        elif not hup and not self._port_open:
            self._port_open = True
        return hup

    def _poll_master(self) -> int:
        p = select.poll()
        p.register(self._master, select.POLLIN)
        events = p.poll(0)
        return events[0][1] if events else 0

    def _drain_inner(self) -> None:
        if self._inner is None:
            return
        while True:
            try:
                data = os.read(self._inner, 4096)
            except BlockingIOError:
                return
            except OSError as e:  # EIO: the interpreter closed its terminal (exited)
                if e.errno != errno.EIO:
                    raise
                return
            if not data:
                return
            self._tail = (self._tail + data)[-64:]
            self.console(self._cook(data))

    def _cook(self, data: bytes) -> bytes:
        """Line ends as the ESP32 port's stdout writes them ("\r\n"), whatever the unix port wrote."""
        lead = b""
        if self._cr and data.startswith(b"\n"):
            lead, data = b"\n", data[1:]
        if data:
            self._cr = data.endswith(b"\r")
        return lead + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def _write_port(self) -> None:
        try:
            n = os.write(self._master, self._out[:65536])
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self._out.clear()
            return
        del self._out[:n]

    def _read_port(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, OSError):
            return
        if self.state == DOWNLOAD:
            for frame in self._slip.feed(data):
                for reply in self._loader.handle(frame):
                    self._out += reply
                if self._loader.reboot:
                    self._write_port()
                    self._boot()
                    return
            self._write_port()
            return
        self._from_port_while_running(data)

    def _from_port_while_running(self, data: bytes) -> None:
        """Pass bytes to the firmware, except a SLIP SYNC frame, which puts the chip in download mode."""
        if not self._hold and 0xC0 not in data:
            return self._to_firmware(data)
        self._hold += data
        start = self._hold.find(b"\xc0")
        if start > 0:
            self._to_firmware(bytes(self._hold[:start]))
            del self._hold[:start]
        end = self._hold.find(b"\xc0", 1)
        if end < 0:
            if len(self._hold) > 64:  # too long for a SYNC: not one
                self._to_firmware(bytes(self._hold))
                self._hold.clear()
            return
        frame, rest = bytes(self._hold[: end + 1]), bytes(self._hold[end + 1 :])
        self._hold.clear()
        frames = SlipDecoder().feed(frame)
        if frames and is_sync(frames[0]) and self.loader_enabled:
            logger.debug("chip %s: SYNC while %s: download mode", self.board_name, self.state)
            self._enter_download()
            self._out += b"".join(self._loader.handle(frames[0]))
            if rest:
                self._read_rest(rest)
        else:
            self._to_firmware(frame)
            if rest:
                self._from_port_while_running(rest)

    def _read_rest(self, rest: bytes) -> None:
        for frame in self._slip.feed(rest):
            for reply in self._loader.handle(frame):
                self._out += reply

    def _to_firmware(self, data: bytes) -> None:
        if data[:1] == b"\x04" and self.state == RUNNING and self._tail.endswith(_PROMPTS):
            self._soft_reset(raw=not self._tail.endswith(b">>> "))
            data = data[1:]
        elif data:
            self._tail = b""  # typed into the REPL: no longer at a fresh raw prompt
        if self.state == RUNNING and self._inner is not None and data:
            try:
                os.write(self._inner, data)
            except (BlockingIOError, OSError):
                pass  # the firmware does not read now: a UART's FIFO overflows the same way
