"""The esptool driver: probe a board in download mode, write a bundle compressed and verified, reset it.

Layer: service helper, blocking (call it in a worker thread: `asyncio.to_thread`). It uses esptool's Python
API (`esptool.cmds`) — the same code paths as `esptool write-flash -z` — and turns esptool's failures into
FlashError with a sentence a person can act on. Progress comes from esptool's own logger: a logger installed
once for the process routes each worker thread's output (progress bars, "Verifying…") to that thread's sink,
so two boards flashing at once never mix their progress. esptool's chatter goes to this module's logger at
DEBUG; it never sees secrets (the bundle is opaque bytes to it).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import BoardError
from .model import ChipInfo

log = logging.getLogger(__name__)

ROM_BAUD = 115200
CONNECT_ATTEMPTS = 3


class FlashError(BoardError):
    """esptool could not do what was asked; `detail` says what to do about it."""


class NoSyncError(FlashError):
    pass


class PortGoneError(FlashError):
    pass


class VerifyError(FlashError):
    pass


class WrongChipError(FlashError):
    status = 422
    title = "Wrong chip"


class WriteResult(NamedTuple):
    bytes_written: int  # uncompressed bytes now in flash
    bytes_sent: int  # bytes over the wire (after compression)
    seconds: float  # esptool's write + verify


# ---- esptool's logger, routed per thread ---------------------------------------------------------------------


class Sink:
    """What one flash wants to hear: progress (phase, current, total) and messages."""

    def __init__(self, on_progress: Callable[[str, int, int], None] | None = None) -> None:
        self.on_progress = on_progress
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)
        log.debug("esptool: %s", text)

    def progress(self, current: int, total: int, prefix: str) -> None:
        if self.on_progress is not None:
            self.on_progress(prefix, current, total)


_local = threading.local()
_install_lock = threading.Lock()
_installed = False


def _sink() -> Sink | None:
    return getattr(_local, "sink", None)


def _install_logger() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        from esp_pylib.logger import EspLog, EspLogBase

        class RoutingLogger(EspLogBase):
            """esptool output of a thread goes to that thread's Sink; other threads' to logging at DEBUG."""

            def _msg(self, *args: Any) -> None:
                text = " ".join(str(a) for a in args).strip()
                if not text:
                    return
                sink = _sink()
                if sink is not None:
                    sink.message(text)
                else:
                    log.debug("esptool: %s", text)

            def print(self, *args, **kwargs) -> None:
                self._msg(*args)

            def err(self, *args, suggestion=None) -> None:
                self._msg(*args)

            def warn(self, *args, suggestion=None) -> None:
                self._msg(*args)

            warning = warn
            error = err

            def note(self, *args) -> None:
                self._msg(*args)

            def hint(self, *args) -> None:
                self._msg(*args)

            def debug(self, *args) -> None:
                pass

            def set_verbosity(self, mode) -> None:
                pass

            def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30) -> None:
                sink = _sink()
                if sink is not None:
                    sink.progress(cur_iter, total_iters, prefix.strip())

        EspLog.set_logger(RoutingLogger())
        _installed = True


class _Session:
    """Context: this thread's esptool output goes to `sink`."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def __enter__(self) -> Sink:
        _install_logger()
        _local.sink = self.sink
        return self.sink

    def __exit__(self, *exc) -> None:
        _local.sink = None


# ---- error mapping ---------------------------------------------------------------------------------------------


def _map_error(exc: BaseException, port: str, phase: str) -> FlashError:
    """esptool's exceptions (FatalError and friends, pyserial's SerialException, OSError) as FlashErrors."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, FlashError):
        return exc
    if "md5 of file does not match" in lowered or "written flash region is empty" in lowered:
        return VerifyError(
            f"verify failed on {port}: the board's flash does not hold what was written (MD5 "
            "mismatch); the flash may be worn or the connection noisy — flash again",
            field="port",
        )
    if phase == "connect" and (
        "could not open port" in lowered or "no such file" in lowered or isinstance(exc, FileNotFoundError)
    ):
        return PortGoneError(f"port {port} is not there (unplugged?)", field="port")
    if phase == "connect" and (
        "failed to connect" in lowered
        or "no serial data" in lowered
        or "timed out" in lowered
        or "invalid head of packet" in lowered
        or "wrong boot mode" in lowered
    ):
        return NoSyncError(
            f"no answer from the bootloader on {port}: is the board in download mode? (hold BOOT, "
            "press EN/RESET, release BOOT, and try again)",
            field="port",
        )
    if "incompatible" in lowered or "this chip is" in lowered and "not" in lowered:
        return WrongChipError(f"esptool refused the image for the chip on {port}: {text}", field="firmware")
    if phase in ("write", "verify") and (
        _is_serial(exc)
        or isinstance(exc, OSError)
        or "timed out" in lowered
        or "no serial data" in lowered
        or "packet" in lowered
    ):
        return PortGoneError(
            f"lost the board on {port} during the {phase} ({text or type(exc).__name__}); the "
            "board's flash is incomplete and nothing was recorded — reconnect it and flash again",
            field="port",
        )
    if _is_serial(exc) or isinstance(exc, OSError):
        return PortGoneError(f"port {port} failed during the {phase}: {text or type(exc).__name__}", field="port")
    return FlashError(f"esptool failed on {port} during the {phase}: {text or type(exc).__name__}", field="port")


def _is_serial(exc: BaseException) -> bool:
    try:
        from serial import SerialException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, SerialException)


def _flash_size_bytes(text: str | None) -> int | None:
    if not text:
        return None
    m = re.match(r"(\d+)\s*([KM])B", text)
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "K" else 1024 * 1024)


# ---- operations ------------------------------------------------------------------------------------------------


def _connect(port: str, *, virtual: bool, baud: int):
    from esptool.cmds import detect_chip

    # A virtual board's pty has no DTR/RTS wiring: it waits in its ROM loader, so we sync without a reset.
    mode = "no-reset" if virtual else "default-reset"
    esp = detect_chip(port, ROM_BAUD, connect_mode=mode, connect_attempts=CONNECT_ATTEMPTS)
    return esp


def _chip_info(esp) -> ChipInfo:
    from esptool.cmds import detect_flash_size

    mac = ":".join(f"{b:02x}" for b in esp.read_mac())
    try:
        size = _flash_size_bytes(detect_flash_size(esp))
    except Exception as e:  # noqa: BLE001 - an unknown flash id is no reason to stop: the table tells
        log.debug("flash size detection failed: %s", e)
        size = None
    try:
        features = list(esp.get_chip_features())
    except Exception:  # noqa: BLE001 - informational only
        features = []
    return ChipInfo(chip=esp.CHIP_NAME, mac=mac, flash_size=size, features=features)


def probe(port: str, *, virtual: bool = False) -> ChipInfo:
    """Connect to the board's ROM loader, read chip, MAC and flash size, and let it run again."""
    sink = Sink()
    with _Session(sink):
        try:
            esp = _connect(port, virtual=virtual, baud=ROM_BAUD)
        except Exception as e:  # noqa: BLE001 - esptool raises many kinds; all are mapped
            raise _map_error(e, port, "connect") from None
        try:
            info = _chip_info(esp)
            if not virtual:
                esp.hard_reset()
            return info
        except Exception as e:  # noqa: BLE001
            raise _map_error(e, port, "probe") from None
        finally:
            esp._port.close()


def flash(
    port: str,
    prepare: Callable[[ChipInfo], list[tuple[int, bytes]]],
    *,
    virtual: bool = False,
    baud: int = 460800,
    on_phase: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[ChipInfo, WriteResult]:
    """One esptool session: probe, ask `prepare(chip)` what to write (it may raise to refuse), write all
    regions compressed in one write_flash, verify by MD5, reset into the new firmware.

    `on_phase("writing" | "verifying")`, `on_progress(done_bytes, total_bytes)` over all regions (uncompressed).
    """
    from esptool.cmds import _set_flash_parameters, attach_flash, run_stub, write_flash

    sink = Sink()
    regions: list[tuple[int, bytes]] = []

    def progress(prefix: str, current: int, total: int) -> None:
        # esptool labels each step "Writing at 0xADDR" (the flash address reached, uncompressed): map it
        # onto all regions, so the bar runs once from 0 to 100 % over the whole bundle.
        m = re.search(r"0x([0-9a-fA-F]+)", prefix)
        if on_progress is None or not m or not regions:
            return
        address = int(m.group(1), 16)
        done = 0
        for offset, data in sorted(regions):
            if address >= offset + len(data):
                done += len(data)
            elif address > offset:
                done += address - offset
        on_progress(min(done, sum(len(d) for _, d in regions)), sum(len(d) for _, d in regions))

    sink.on_progress = progress
    with _Session(sink):
        try:
            esp = _connect(port, virtual=virtual, baud=ROM_BAUD)
        except Exception as e:  # noqa: BLE001
            raise _map_error(e, port, "connect") from None
        try:
            try:
                info = _chip_info(esp)
            except Exception as e:  # noqa: BLE001
                raise _map_error(e, port, "connect") from None
            regions.extend(prepare(info))  # may raise a domain error: nothing has been written yet
            phase = "write"
            try:
                if not virtual:
                    esp = run_stub(esp)
                if baud != ROM_BAUD:
                    esp.change_baud(baud)
                # No silent reconnect after a lost port: whatever appears under the same path next may be
                # another board (or a reused pty), and the identity in this bundle belongs to the MAC probed
                # above. A vanished port is an error; the person plugs the board back in and flashes again.
                esp.WRITE_FLASH_ATTEMPTS = 1
                attach_flash(esp)
                _set_flash_parameters(esp, "keep")
                if on_phase:
                    on_phase("writing")
                started = time.monotonic()
                write_flash(esp, regions, compress=True)
                seconds = time.monotonic() - started
                phase = "reset"
                if on_phase:
                    on_phase("verifying")  # write_flash has verified each region by MD5 already
                _reset(esp, virtual)
            except Exception as e:  # noqa: BLE001
                if phase == "write" and any("Verifying written data" in line for line in sink.lines[-3:]):
                    phase = "verify"
                raise _map_error(e, port, phase) from None
            sent = _bytes_sent(sink.lines)
            return info, WriteResult(sum(len(d) for _, d in regions), sent, seconds)
        finally:
            try:
                esp._port.close()
            except Exception:  # noqa: BLE001 - a vanished port cannot be closed cleanly
                pass


def _reset(esp, virtual: bool) -> None:
    from esptool.cmds import reset_chip

    # A real board reboots by its EN line (RTS). A virtual one has no lines: the ROM's "run user code"
    # (flash_begin(0, 0) + flash_end(run)) boots it from the flash just written, as it would a real ROM loader.
    reset_chip(esp, "soft-reset" if virtual else "hard-reset")


def _bytes_sent(lines: list[str]) -> int:
    """Sum of "Wrote N bytes (M compressed)" over the regions."""
    total = 0
    for line in lines:
        if m := re.search(r"Wrote \d+ bytes \((\d+) compressed\)", line):
            total += int(m.group(1))
        elif m := re.search(r"Wrote (\d+) bytes at", line):
            total += int(m.group(1))
    return total
