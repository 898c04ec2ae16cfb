"""VirtualBoard: a virtual ESP32 — flash file, ROM loader and console on a pty, MicroPython booted from flash.

Layer: sim (CPython). The board's flash is ROOT/flash.bin (the board's flash size; esptool writes it through
the pty `serial_port`, see chip.py); its `vfs` partition holds the littlefs filesystem that MicroPython mounts
at boot (micropython/shims/_boot.py). provision() is the shortcut for tests that do not test flashing: it
writes what flashing would (bootloader and app headers, partition table, the agent's files as littlefs).
ROOT/io holds what the shims make observable: pins.log (output levels), pwm.log, inputs.json (ADC, input
pins, 1-Wire, DHT and I2C sensors: set_input),
console.log (the board's serial console). The machine/network shims come from the repository's
micropython/shims and are never copied into flash, exactly as a real board never has them.
It must not import litestar or aiocoap.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from pifleet import resources
from pifleet.boardfs import bundle
from pifleet.boardfs.layout import (
    TABLE_OFFSET,
    LayoutError,
    build_littlefs,
    build_partition_table,
    find_app,
    find_vfs,
    micropython_default_table,
    parse_partition_table,
    read_littlefs,
)
from pifleet.devices.identity import device_id_for, new_secret
from pifleet.roles.presets import ROLES
from pifleet.runtime import pid_alive, runtime_dir
from pifleet.sim.chip import BOOTLOADER_OFFSET, WATCHDOG_RESET, Chip  # noqa: F401 (WATCHDOG_RESET: re-exported)
from pifleet.sim.flash import DEFAULT_SIZE, Flash, board_mac

logger = logging.getLogger(__name__)

SHIMS = resources.agent() / "shims"  # machine, network, esp32 … for the unix port; never written to flash

# The virtual ESP32's Python heap (`-X heapsize`), so that a MemoryError here is one a real board would have:
# - a plain ESP32 (ESP32_GENERIC, MicroPython >= 1.22, Wi-Fi up) has about 112 KiB of Python heap;
# - this 64-bit port stores the same objects in more bytes: tools/bench/board_heap.py runs one workload on both
#   builds (paired blind board, boot and 1,000 OSCORE-protected commands) and the 64-bit heap in use is 1.71 times
#   the 32-bit one after boot and 1.67 after the commands (the smaller is taken: the stricter side);
# - the shims (machine, network, esp32 and the io they share) are Python here, compiled into the heap at boot,
#   where a board has C outside its heap: tests/board/test_virtual_esp32.py measures what they take.
# docs/agent.md, "Heap".
ESP32_HEAP = 112 * 1024
RATIO_64 = 1.67
SHIMS_HEAP = 32 * 1024
AGENT_HEAP_64 = round(ESP32_HEAP * RATIO_64 / 1024) * 1024  # 187 KiB: the agent's share
DEFAULT_HEAPSIZE = AGENT_HEAP_64 + SHIMS_HEAP  # 219 KiB

# The MicroPython version of the unix port the virtual board runs: its modules are compiled for it.
SIM_MICROPYTHON = "1.29.0"

# How the process of a board ends when the shim's machine.WDT was not fed (see micropython/shims/machine.py).

_claimed_ips: set[str] = set()  # addresses this process's boards hold, running or not (see _claim)
_claim_lock = threading.Lock()


def image_header(entry: int = 0x40080000) -> bytes:
    """A minimal ESP32 image header (magic 0xE9, no segments, DIO, 4 MB) — enough for the virtual ROM's check.

    The real bytes come from the base image (pifleet.flashing); this is only provision()'s stand-in.
    """
    return struct.pack("<BBBBI", 0xE9, 0, 2, 0x20, entry) + b"\xee" + b"\0" * 15 + b"\0" * 15 + b"\xef"


def micropython_binary() -> str | None:
    """The unix-port interpreter from this venv, else from PATH, else None."""
    candidate = Path(sys.executable).parent / "micropython"
    if candidate.exists():
        return str(candidate)
    return shutil.which("micropython")


def _claim(ip: str) -> bool:
    """Claim an address for a board of this process, across processes: RUNTIME/sim-ips/IP holds the claiming
    process's pid. A board's address must stay its own while it reboots (the socket is closed then), so a free
    port alone does not prove an address free. Claims of processes that are gone are taken over; a claim file
    without a pid yet is another process's claim being written, taken over only once it is old."""
    with _claim_lock:  # boards started side by side in threads of one process (a fixture's pool)
        if ip in _claimed_ips:
            return False
        claims = runtime_dir() / "sim-ips"
        claims.mkdir(parents=True, exist_ok=True)
        path = claims / ip
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    owner, age = int(path.read_text() or 0), time.time() - path.stat().st_mtime
                except (OSError, ValueError):
                    owner, age = 0, 0.0
                if owner == os.getpid() or (owner and pid_alive(owner)) or (not owner and age < 10):
                    return False
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            _claimed_ips.add(ip)
            return True
        return False


def free_loopback_ip(port: int) -> str:
    """The first 127.0.0.N (N >= 2) that no board of any running process has claimed and where nobody listens
    on UDP `port`; claimed for this process."""
    for n in range(2, 255):
        ip = f"127.0.0.{n}"
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((ip, port))
        except OSError:
            continue
        finally:
            probe.close()
        if _claim(ip):
            return ip
    raise RuntimeError(f"no free loopback address for UDP port {port}")


class VirtualBoard:
    """One virtual ESP32 running the pifleet agent."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        role: str | None = None,
        master: tuple[str, int] = ("127.0.0.1", 5683),
        device_id: str | None = None,
        ip: str | None = None,
        heapsize: int = DEFAULT_HEAPSIZE,
        lifetime: int = 60,
        caps: dict | None = None,
        listen_port: int = 5683,
        runtime: str | None = None,
        flash_size: int = DEFAULT_SIZE,
        erased: bool = False,
        loader_enabled: bool = True,
        oscore_id: bytes | None = None,
        netns: str | None = None,
    ) -> None:
        if role is None and not erased:
            raise ValueError("a board that is not erased needs a role")
        if caps is None and role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")
        self.name = name
        self.root = Path(root)
        self.role = role
        self.master = (master[0], int(master[1]))
        self.device_id = device_id or device_id_for(board_mac(name))  # as flashing or adoption would name it
        self.listen_port = listen_port
        self.ip = ip or free_loopback_ip(listen_port)
        _claimed_ips.add(self.ip)  # an address given explicitly is the caller's to keep unique
        self.heapsize = heapsize
        self.lifetime = lifetime
        self.caps = caps if caps is not None else ROLES.get(role, {})
        self.flash_size = flash_size
        self.erased = erased
        self.loader_enabled = loader_enabled
        self.flash_path = self.root / "flash.bin"
        self.mac = board_mac(name)
        # the secret flashing would give it, from the same maker; a board started on its own keeps it to itself
        # (the master learns a board's keys only by flashing or adopting it)
        self.secret = new_secret()
        # an OSCORE sender id: the board protects everything with keys from its secret, as a flashed board does
        # (for benchmarks and tests that pair it with a Gateway themselves; the master never learns these keys)
        self.oscore_id = oscore_id
        self.io = self.root / "io"
        self._chip: Chip | None = None
        # "micropython" or "cpython"; None picks MicroPython wherever its binary exists.
        self.runtime = runtime
        self._exit: int | None = None
        # a network namespace (sim/netns.py) the firmware runs in, its `ip` that namespace's address
        self.netns = netns

    # -- provisioning ----------------------------------------------------------------------------

    def board_files(self, identity: bool = True) -> dict[str, bytes]:
        """The board's filesystem, built by the same code that builds a real board's bundle (agent and role
        modules as .mpy, config.json); as source where the agent runs under CPython.

        identity=False: a board flashed elsewhere (or factory reset) — agent and role, but no device id or name;
        it waits for adoption (docs/protocol.md, "Adoption")."""
        who = (
            bundle.Identity(self.device_id, self.name, self.role or "", self.secret, self.oscore_id)
            if identity
            else None
        )
        files, _ = bundle.board_files(
            who,
            role=self.role or "",
            caps=self.caps,
            version=SIM_MICROPYTHON,
            master=self.master,
            wifi=("pifleet-sim", ""),
            lifetime=self.lifetime,
            listen_port=self.listen_port,
            compiled=self._compiled(),
        )
        return files

    def _compiled(self) -> bool:
        return self.runtime != "cpython" and micropython_binary() is not None

    def read_files(self) -> dict[str, bytes]:
        """The files in the flash's vfs partition now (LayoutError if there is no filesystem)."""
        flash = Flash(self.flash_path, self.flash_size)
        vfs = find_vfs(parse_partition_table(flash.read(TABLE_OFFSET, 0xC00)))
        if vfs is None:
            raise LayoutError("no vfs partition")
        return read_littlefs(flash.read(vfs.offset, vfs.size))

    def provision(self, identity: bool = True) -> None:
        """Write the board's flash as flashing would; a flash whose filesystem has a config.json is kept.

        The stand-in for the real flashing path (bundle + esptool) in tests that do not test flashing: minimal
        bootloader and app headers, MicroPython's partition table, the files of board_files() as littlefs.
        An erased board gets a blank flash (all 0xFF) and waits for esptool.
        """
        self.io.mkdir(parents=True, exist_ok=True)
        flash = Flash(self.flash_path, self.flash_size)
        if self.erased:
            return
        try:
            if "config.json" in self.read_files():
                return
        except LayoutError:
            pass
        table = micropython_default_table(self.flash_size)
        vfs = find_vfs(table)
        flash.write(BOOTLOADER_OFFSET, image_header())
        flash.write(TABLE_OFFSET, build_partition_table(table))
        flash.write(find_app(table).offset, image_header())
        flash.write(vfs.offset, build_littlefs(self.board_files(identity), vfs.size, last=bundle.LOADED_PER_USE))

    # -- power -----------------------------------------------------------------------------------

    @property
    def serial_port(self) -> str | None:
        """The board's UART0 (a pty path): esptool's and mpremote's --port / connect."""
        return self._chip.port if self._chip is not None else None

    @property
    def _proc(self) -> subprocess.Popen | None:
        return self._chip.proc if self._chip is not None else None

    @property
    def powered(self) -> bool:
        """Between start() and stop()/kill(): the chip is on, whether its firmware runs or not."""
        return self._chip is not None

    @property
    def state(self) -> str:
        """off, download (ROM loader), running (MicroPython), halted (nothing bootable in flash)."""
        return self._chip.state if self._chip is not None else "off"

    def start(self) -> None:
        """Power the board on: the chip boots from its flash (or sits in the ROM if nothing is bootable)."""
        if self._chip is not None:
            raise RuntimeError(f"board {self.name} is already running")
        self.provision()
        binary = micropython_binary() if self.runtime in (None, "micropython") else None
        if self.runtime == "micropython" and binary is None:
            raise RuntimeError("no micropython binary on this machine")
        self._cpython_reason = (
            None if binary else ("as asked" if self.runtime == "cpython" else "no micropython binary on this machine")
        )
        self.runtime = "micropython" if binary is not None else "cpython"
        self._exit = None
        self._chip = Chip(
            self.name,
            Flash(self.flash_path, self.flash_size),
            self.mac,
            self.io / "console.log",
            self._spawn,
            loader_enabled=self.loader_enabled,
        )
        self._chip.start()
        self._chip.power_on()
        self._write_port_file()

    def _spawn(self, slave: int, soft: bool = False) -> subprocess.Popen:
        """The firmware: MicroPython on the inner pty, its first step the _boot shim (mount vfs, boot, main)."""
        env = dict(
            os.environ,
            PIFLEET_SIM_IO=str(self.io.resolve()),
            PIFLEET_SIM_IP=self.ip,
            PIFLEET_SIM_MAC=self.mac.hex(),  # the chip's eFuse MAC: machine.unique_id() and the station's MAC
            PIFLEET_SIM_FLASH=str(self.flash_path.resolve()),
            PIFLEET_SIM_RESET_CAUSE=self._chip.reset_cause if self._chip is not None else "power",
            PIFLEET_SIM_WDT_CHIP="1",  # the chip watches machine.WDT's feeds (io/wdt; chip.py, _watchdog)
        )
        if soft:
            env["PIFLEET_SIM_SOFT_RESET"] = "1"  # _boot runs boot.py, not main.py (the raw REPL waits)
        cwd = self.root
        if self.runtime == "micropython":
            # Like an ESP32's sys.path ['', '.frozen', '/lib'], plus the shims (outside the board's flash).
            env["MICROPYPATH"] = os.pathsep.join(["", ".frozen", "lib", str(SHIMS)])
            # -i: when main.py ends or is interrupted, the REPL is there, as on the ESP32 port.
            argv = [micropython_binary(), "-X", f"heapsize={self.heapsize}", "-i", "-c", "import _boot"]
        else:
            message = (
                f"board {self.name}: {self._cpython_reason}; "
                f"running the agent under CPython {sys.version.split()[0]} instead"
            )
            logger.warning(message)
            self._chip.console((message + "\n").encode())
            # CPython cannot mount littlefs: it runs a copy of the vfs files (its writes stay in the copy).
            cwd = self.root / "fs"
            shutil.rmtree(cwd, ignore_errors=True)
            for path, data in self.read_files().items():
                (cwd / path).parent.mkdir(parents=True, exist_ok=True)
                (cwd / path).write_bytes(data)
            env["PYTHONPATH"] = os.pathsep.join([str(cwd / "lib"), str(SHIMS)])
            argv = [sys.executable, "-u", "-c", "import boot\nimport main\n"]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]  # it execs the interpreter: the pid stays

        def controlling_terminal():  # a session of its own, the inner pty its terminal: Ctrl-C is SIGINT
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal
        )

    def _port_file(self) -> Path:
        return runtime_dir() / "sim-ports" / f"{self.name}.json"

    def _write_port_file(self) -> None:
        path = self._port_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "port": self.serial_port,
            "name": self.name,
            "chip": "ESP32",
            "mac": ":".join(f"{b:02x}" for b in self.mac),
            "pid": os.getpid(),
            "flash": str(self.flash_path),
            "flash_size": self.flash_size,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, path)

    @property
    def running(self) -> bool:
        """The firmware (interpreter) is running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._exit if self._proc is None else self._proc.poll()

    @property
    def reset_by_watchdog(self) -> bool:
        return self.returncode == WATCHDOG_RESET

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _interrupt(self) -> tuple[subprocess.Popen, int] | None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        mark = len(self.console_text())
        proc.send_signal(signal.SIGINT)
        return proc, mark

    def _stopped(self, proc: subprocess.Popen, mark: int) -> bool:
        """The interpreter exited, or the agent finished its orderly stop and MicroPython sits in its REPL."""
        if proc.poll() is not None:
            return True
        tail = self.console_text()[mark:]
        return "agent: stopped" in tail or ">>> " in tail

    def stop(self, timeout: float = 10.0) -> int | None:
        """Orderly stop, then power off: the agent switches outputs off and deregisters.

        Sent as SIGINT: the unix port turns it into KeyboardInterrupt, exactly like Ctrl-C on a board's REPL.
        """
        started = self._interrupt()
        if started is not None:
            deadline = time.monotonic() + timeout
            while not self._stopped(*started):
                if time.monotonic() > deadline:
                    logger.warning("board %s did not stop within %.0f s; cutting power", self.name, timeout)
                    break
                time.sleep(0.02)
        return self._power_off()

    async def stop_async(self, timeout: float = 10.0) -> int | None:
        """Like stop(), without blocking the event loop — needed when the master runs in this same loop,
        since the board waits for the master's answer to its DELETE before it exits."""
        started = self._interrupt()
        if started is not None:
            deadline = time.monotonic() + timeout
            while not self._stopped(*started):
                if time.monotonic() > deadline:
                    logger.warning("board %s did not stop within %.0f s; cutting power", self.name, timeout)
                    break
                await asyncio.sleep(0.02)
        return self._power_off()

    def kill(self) -> int | None:
        """Pull the power: no deregistration, outputs stay where they were (until the next boot)."""
        return self._power_off()

    def _power_off(self) -> int | None:
        chip, self._chip = self._chip, None
        if chip is None:
            return self._exit
        proc = chip.proc
        if proc is not None:
            if proc.poll() is None:
                time.sleep(0.05)  # let the last console lines through
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    self._exit = 0  # the power went off; the firmware did not fail
                else:
                    self._exit = proc.returncode
            else:
                # Interrupted in the REPL, the unix port dies of the SIGINT: still an orderly stop.
                self._exit = 0 if proc.returncode == -signal.SIGINT else proc.returncode
        chip.close()
        try:
            self._port_file().unlink()
        except FileNotFoundError:
            pass
        return self._exit

    # -- observation -----------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return self.ip, self.listen_port

    def console_text(self) -> str:
        try:
            return (self.io / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the agent listens (its console says so); raise if it died or took too long."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"board {self.name} not ready after {timeout} s:\n{self.console_text()}")
            time.sleep(0.02)

    async def wait_ready_async(self, timeout: float = 15.0) -> None:
        """Like wait_ready(), without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"board {self.name} not ready after {timeout} s:\n{self.console_text()}")
            await asyncio.sleep(0.02)

    def ready(self) -> bool:
        if self._chip is not None and self._chip.state == "halted":
            raise RuntimeError(f"board {self.name} has nothing bootable in flash:\n{self.console_text()}")
        if self._proc is not None and self._proc.poll() is not None:
            if self._proc.returncode == -signal.SIGKILL:
                # the chip cut the interpreter off for a reset or esptool's download mode: the next boot follows
                # (until the chip's loop has started it, this is the old process)
                return False
            raise RuntimeError(f"board {self.name} exited with {self._proc.returncode}:\n{self.console_text()}")
        return "agent: listening on" in self.console_text()

    def pin_history(self) -> list[tuple[float, int, int]]:
        """Every output level change: (wall-clock seconds, pin, level), oldest first."""
        history = []
        try:
            lines = (self.io / "pins.log").read_text().splitlines()
        except FileNotFoundError:
            return history
        for line in lines:
            parts = line.split()
            if len(parts) == 3:  # a line being written right now may be incomplete
                history.append((int(parts[0]) / 1e9, int(parts[1]), int(parts[2])))
        return history

    def pin_level(self, pin: int) -> int:
        """The level an output was last driven to (0 if it never was)."""
        level = 0
        for _, p, value in self.pin_history():
            if p == pin:
                level = value
        return level

    def set_input(
        self,
        *,
        adc: dict[int, int] | None = None,
        pins: dict[int, int] | None = None,
        onewire: dict[int, list[float | None]] | None = None,
        dht: dict[int, dict | None] | None = None,
        bme280: dict | None = None,
    ) -> None:
        """Set what the board's inputs read; the board sees it at its next read (the shims re-read the file).

        adc: {pin: microvolts}; pins: {pin: level} of input pins.
        onewire: {pin: [celsius, ...]}: the DS18B20s on that pin's bus, in a fixed order (each keeps its ROM);
          None in the list unplugs that sensor, an empty list leaves the bus empty.
        dht: {pin: {"celsius": …, "humidity": …}} (a DHT22 on that pin); None or {"absent": True}: no answer.
        bme280: {"celsius": …, "hpa": …, "humidity": …} for a BME280 at "address" (default 0x76);
          "raw": {"t", "p", "h"} sets its ADC values instead, "chip_id" another chip's id, "present": False
          unplugs it (see micropython/shims/_bme280sim.py).
        """
        path = self.io / "inputs.json"
        self.io.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        for kind, values in (("adc", adc), ("pins", pins)):
            if values:
                data.setdefault(kind, {}).update({str(k): int(v) for k, v in values.items()})
        if onewire:
            data.setdefault("onewire", {}).update(
                {str(pin): [None if c is None else float(c) for c in temps] for pin, temps in onewire.items()}
            )
        if dht:
            data.setdefault("dht", {}).update({str(pin): values for pin, values in dht.items()})
        if bme280 is not None:
            chip = dict(bme280)
            address = str(int(chip.pop("address", 0x76)))
            if chip.pop("present", True):
                data.setdefault("i2c", {})[address] = {"chip": "bme280", **chip}
            else:
                data.setdefault("i2c", {}).pop(address, None)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)  # atomic: the board never reads half a file

    def __repr__(self) -> str:
        state = self.state
        return f"<VirtualBoard {self.name} {self.ip}:{self.listen_port} role={self.role} {state}>"
