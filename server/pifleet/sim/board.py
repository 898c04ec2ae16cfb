"""VirtualBoard: provision a board's flash directory and boot it in a real MicroPython interpreter.

Layer: sim (CPython). The board filesystem lives in ROOT/flash (what a Pi would write to an ESP32's vfs);
ROOT/io holds what the shims make observable: pins.log (output levels), inputs.json (ADC and input pins),
console.log (the board's serial console). The machine/network shims come from the repository's
micropython/shims and are never copied into flash, exactly as a real board never has them.
It must not import litestar or aiocoap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
AGENT_SRC = REPO / "micropython"
SHIMS = AGENT_SRC / "shims"
CAPABILITIES_SRC = REPO / "capabilities"

# Heap for the interpreter, like a generic ESP32 without PSRAM (MicroPython gets roughly 100-160 KB there).
# Measured by tools/bench/board_heap.py on the 64-bit unix port with the blind role: 66 KB allocated after
# boot, 81 KB after 100 commands, smallest heap that boots and serves 100 commands 97 KB (99328 bytes).
# 128 KB gives ~30 % headroom and stays ESP32-realistic (a 32-bit ESP32 needs less for the same objects).
DEFAULT_HEAPSIZE = 128 * 1024

# Role presets: capability configs for each role.
ROLES = {
    "blind": {"blind": {"up_pin": 25, "down_pin": 26, "dead_time_ms": 500, "max_seconds": 120}},
    "sensor": {"temperature": {"pin": 34}},
}

# How the process of a board ends when the shim's machine.WDT was not fed (see micropython/shims/machine.py).
WATCHDOG_RESET = -signal.SIGUSR1

_claimed_ips: set[str] = set()  # addresses handed to boards of this process, running or not


def micropython_binary() -> str | None:
    """The unix-port interpreter from this venv, else from PATH, else None."""
    candidate = Path(sys.executable).parent / "micropython"
    if candidate.exists():
        return str(candidate)
    return shutil.which("micropython")


def free_loopback_ip(port: int) -> str:
    """The first 127.0.0.N (N >= 2) where nobody listens on UDP `port` and no board of ours lives."""
    for n in range(2, 255):
        ip = f"127.0.0.{n}"
        if ip in _claimed_ips:
            continue
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((ip, port))
        except OSError:
            continue
        finally:
            probe.close()
        return ip
    raise RuntimeError(f"no free loopback address for UDP port {port}")


class VirtualBoard:
    """One virtual ESP32 running the pifleet agent."""

    def __init__(self, name: str, root: Path, *, role: str, master: tuple[str, int] = ("127.0.0.1", 5683),
                 device_id: str | None = None, ip: str | None = None, heapsize: int = DEFAULT_HEAPSIZE,
                 lifetime: int = 60, caps: dict | None = None, listen_port: int = 5683,
                 runtime: str | None = None) -> None:
        if caps is None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")
        self.name = name
        self.root = Path(root)
        self.role = role
        self.master = (master[0], int(master[1]))
        self.device_id = device_id or f"vb-{name}"
        self.listen_port = listen_port
        self.ip = ip or free_loopback_ip(listen_port)
        _claimed_ips.add(self.ip)
        self.heapsize = heapsize
        self.lifetime = lifetime
        self.caps = caps if caps is not None else ROLES[role]
        self.flash = self.root / "flash"
        self.io = self.root / "io"
        # "micropython" or "cpython"; None picks MicroPython wherever its binary exists.
        self.runtime = runtime
        self._proc: subprocess.Popen | None = None
        self._console = None

    # -- provisioning ----------------------------------------------------------------------------

    def provision(self) -> None:
        """Write the board's filesystem, as flashing would. An already provisioned board is left as it is."""
        self.io.mkdir(parents=True, exist_ok=True)
        if (self.flash / "config.json").exists():
            return
        staging = self.root / "flash.new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(AGENT_SRC / "boot.py", staging / "boot.py")
        shutil.copy2(AGENT_SRC / "main.py", staging / "main.py")
        shutil.copytree(AGENT_SRC / "agent", staging / "agent",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (staging / "caps").mkdir()
        (staging / "caps" / "__init__.py").write_text("")
        for cap in self.caps:
            shutil.copy2(CAPABILITIES_SRC / f"{cap}.py", staging / "caps" / f"{cap}.py")
        config = {
            "device_id": self.device_id, "name": self.name, "role": self.role, "et": "pifleet.esp32",
            "master": {"host": self.master[0], "port": self.master[1]},
            "wifi": {"ssid": "pifleet-sim", "psk": ""},
            "listen_port": self.listen_port, "lifetime": self.lifetime, "caps": self.caps,
        }
        # config.json last: its presence marks a complete provisioning.
        (staging / "config.json").write_text(json.dumps(config, indent=1))
        shutil.rmtree(self.flash, ignore_errors=True)
        staging.rename(self.flash)

    # -- power -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Power the board on: boot.py, then main.py, in a real MicroPython (or CPython where there is none)."""
        if self.running:
            raise RuntimeError(f"board {self.name} is already running")
        self.provision()
        env = dict(os.environ, PIFLEET_SIM_IO=str(self.io), PIFLEET_SIM_IP=self.ip)
        launcher = "import boot\nimport main\n"  # what the ESP32 port does at power-on
        binary = micropython_binary() if self.runtime in (None, "micropython") else None
        if self.runtime == "micropython" and binary is None:
            raise RuntimeError("no micropython binary on this machine")
        self._console = open(self.io / "console.log", "ab", buffering=0)
        if binary is not None:
            self.runtime = "micropython"
            # Like an ESP32's sys.path ['', '.frozen', '/lib'], plus the shims (outside the board's flash).
            env["MICROPYPATH"] = os.pathsep.join(["", ".frozen", "lib", str(SHIMS)])
            argv = [binary, "-X", f"heapsize={self.heapsize}", "-c", launcher]
        else:
            reason = "as asked" if self.runtime == "cpython" else "no micropython binary on this machine"
            self.runtime = "cpython"
            message = (f"board {self.name}: {reason}; "
                       f"running the agent under CPython {sys.version.split()[0]} instead")
            logger.warning(message)
            self._console.write((message + "\n").encode())
            env["PYTHONPATH"] = os.pathsep.join([str(self.flash / "lib"), str(SHIMS)])
            argv = [sys.executable, "-u", "-c", launcher]
        # A session of its own: Ctrl-C in the terminal reaches the runner, which then stops the board once,
        # instead of the board getting a second interrupt in the middle of its orderly stop.
        self._proc = subprocess.Popen(argv, cwd=self.flash, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._console, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def reset_by_watchdog(self) -> bool:
        return self.returncode == WATCHDOG_RESET

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def stop(self, timeout: float = 10.0) -> int | None:
        """Orderly stop: the agent switches outputs off and deregisters, then exits.

        Sent as SIGINT: the unix port has no `signal` module, but it turns SIGINT into KeyboardInterrupt,
        exactly like Ctrl-C on a board's REPL, and so does CPython.
        """
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("board %s did not stop within %.0f s; cutting power", self.name, timeout)
                self._proc.kill()
                self._proc.wait()
        return self._finish()

    async def stop_async(self, timeout: float = 10.0) -> int | None:
        """Like stop(), without blocking the event loop — needed when the master runs in this same loop,
        since the board waits for the master's answer to its DELETE before it exits."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self._proc.poll() is None:
                if time.monotonic() > deadline:
                    logger.warning("board %s did not stop within %.0f s; cutting power", self.name, timeout)
                    self._proc.kill()
                    self._proc.wait()
                    break
                await asyncio.sleep(0.02)
        return self._finish()

    def kill(self) -> int | None:
        """Pull the power: no deregistration, outputs stay where they were (until the next boot)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        return self._finish()

    def _finish(self) -> int | None:
        if self._console is not None:
            self._console.close()
            self._console = None
        return self._proc.returncode if self._proc else None

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
        if self._proc is not None and self._proc.poll() is not None:
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

    def set_input(self, *, adc: dict[int, int] | None = None, pins: dict[int, int] | None = None) -> None:
        """Set ADC inputs (microvolts) and input pin levels; the board sees them at its next read."""
        path = self.io / "inputs.json"
        self.io.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        for kind, values in (("adc", adc), ("pins", pins)):
            if values:
                data.setdefault(kind, {}).update({str(k): int(v) for k, v in values.items()})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)  # atomic: the board never reads half a file

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<VirtualBoard {self.name} {self.ip}:{self.listen_port} role={self.role} {state}>"
