"""ProcessTarget: provision a working directory and run the board agent in it under CPython.

Layer: a target runner (CPython). It shares the virtual board's sources (pifleet.resources) and address claims
(pifleet.sim.board.free_loopback_ip) but none of its chip: no flash image, no ROM loader, no pty, no boot.py (a
process drives no outputs) and none of the ESP32 shims.

- The working directory DATA_DIR/NAME holds main.py, agent/ (the same files a board gets), caps/ (the host
  capabilities) and config.json (role "process", et "pifleet.process", the master's address, the
  capabilities' config — database DSNs, so it is written 0600).
- A process is paired like a board flashed elsewhere: its first start has no identity, and the agent asks
  the master to adopt it. Its console prints `adopt: code XXXX-XXXX`, which a person confirms in the
  dashboard or with `pifleet adopt confirm`. The identity it gets (device id, name, secret, OSCORE id) is kept
  in config.json across restarts. Its adoption MAC is its own: one derived from the host's and the process
  name (locally administered), so processes on one host are told apart.
- The only runtime edge the agent needs beyond port.py is `network`: on a Linux host that is
  micropython/host/network.py (the host is on its network already; the address to serve on comes from
  $PIFLEET_PROCESS_IP).
- Life cycle like a board's: the agent runs in a session of its own, "agent: listening on" in its console
  means ready, SIGINT is the orderly stop (it deregisters), SIGKILL a power cut.

Agent and capability files are copied afresh at every start, so a process always runs the agent of the master
installed next to it. It must not import litestar or aiocoap.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
from urllib.parse import quote

from pifleet import resources
from pifleet.boardfs import config as boardfs_config
from pifleet.sim.board import free_loopback_ip

logger = logging.getLogger(__name__)

HOST_EDGE = resources.agent() / "host"  # `network` for the agent on a Linux host
PROCESS_CAPS = ("db", "python")
_CAP_HELPERS = ("_jsonsafe.py",)  # modules the host capabilities import from caps/
MASTER_DATABASE = "pifleet"  # the master's database name on its embedded server (pifleet.storage.postgres)


def master_database_url(master_data_dir: Path) -> str | None:
    """The master's own database: $DATABASE_URL, else its embedded server (running in MASTER_DATA_DIR/pg)."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    try:
        lines = (master_data_dir / "pg" / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    # postmaster.pid: pid, data dir, start time, port, socket directory, listen address, shmem, status
    if len(lines) < 5 or not lines[3].strip().isdigit() or not lines[4].strip():
        return None
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/{MASTER_DATABASE}?host={quote(socket_dir)}&port={port}"


def default_ip(master: tuple[str, int], port: int) -> str:
    """Where a process serves: a free 127.0.0.N next to a master on loopback, else the address of the
    interface that routes to the master (what the master will see as the registration's source)."""
    host = master[0]
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return free_loopback_ip(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, master[1]))  # UDP connect sends nothing; it only picks the route
        return probe.getsockname()[0]


class ProcessTarget:
    """The agent under CPython on this host, registered as a process target with host capabilities."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        master: tuple[str, int] = ("127.0.0.1", 5683),
        caps: tuple[str, ...] | list[str] = PROCESS_CAPS,
        databases: dict[str, str] | None = None,
        modules_dir: Path | None = None,
        ip: str | None = None,
        listen_port: int = 5683,
        lifetime: int = 60,
        max_rows: int = 1000,
        db_timeout_s: float = 8.0,
    ) -> None:
        unknown = [c for c in caps if c not in PROCESS_CAPS]
        if unknown:
            raise ValueError(f"unknown process capabilities {', '.join(unknown)}; known: {', '.join(PROCESS_CAPS)}")
        self.name = name
        self.root = Path(root).resolve()  # the working directory: to a process what flash is to a board
        self.master = (master[0], int(master[1]))
        self.listen_port = listen_port
        self.ip = ip or default_ip(self.master, listen_port)
        self.lifetime = lifetime
        self.modules_dir = Path(modules_dir).resolve() if modules_dir else self.root / "modules"
        self.caps: dict[str, dict] = {}
        if "db" in caps:
            self.caps["db"] = {"databases": dict(databases or {}), "max_rows": max_rows, "timeout_s": db_timeout_s}
        if "python" in caps:
            self.caps["python"] = {"modules_dir": str(self.modules_dir)}
        self._proc: subprocess.Popen | None = None
        self._console = None

    # -- provisioning ----------------------------------------------------------------------------

    def provision(self) -> None:
        """Write the working directory: agent files and capabilities afresh, then config.json (0600)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("agent", "caps"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        agent, capabilities = resources.agent(), resources.host_capabilities()
        shutil.copytree(agent / "agent", self.root / "agent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy2(agent / "main.py", self.root / "main.py")
        (self.root / "caps").mkdir()
        (self.root / "caps" / "__init__.py").write_text("")
        for filename in (*_CAP_HELPERS, *(f"{cap}.py" for cap in self.caps)):
            shutil.copy2(capabilities / filename, self.root / "caps" / filename)
        if "python" in self.caps:
            self.modules_dir.mkdir(parents=True, exist_ok=True)
        config = boardfs_config.config_json(
            boardfs_config.identity_of(self.identity()),
            "process",
            self.caps,
            master=self.master,
            wifi=None,  # the host is on its network already
            mdns=False,  # the address it was given is the master: no mDNS search for another one
            et=boardfs_config.PROCESS,
            listen_port=self.listen_port,
            lifetime=self.lifetime,
        )
        # the caps config holds database DSNs, passwords included: readable by this user only
        boardfs_config.save(self.root, config)

    def identity(self) -> dict:
        """What adoption gave this process (device_id, name, secret, oscore_id); empty before its adoption."""
        try:
            config = json.loads((self.root / "config.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {k: config[k] for k in ("device_id", "name", "secret", "oscore_id") if k in config}

    @property
    def device_id(self) -> str | None:
        return self.identity().get("device_id")

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run `import main` under this CPython in the working directory, with the host's `network`."""
        if self.running:
            raise RuntimeError(f"process target {self.name} is already running")
        self.provision()
        env = dict(os.environ, PIFLEET_PROCESS_IP=self.ip, PIFLEET_PROCESS_NAME=self.name)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOST_EDGE), env.get("PYTHONPATH")) if p)
        self._console = open(self.root / "console.log", "ab", buffering=0)
        # A session of its own: a terminal's Ctrl-C reaches the runner, which then stops the agent once.
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-c", "import main\n"],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,
        )  # what the agent writes (its config: secret, DSNs) is private

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def stop(self, timeout: float = 10.0) -> int | None:
        """Orderly stop: SIGINT is KeyboardInterrupt in the agent, which deregisters and exits."""
        if self.running:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("process target %s did not stop within %.0f s; killing it", self.name, timeout)
        return self.kill()

    async def stop_async(self, timeout: float = 10.0) -> int | None:
        """Like stop(), without blocking the event loop (a master in the same loop must answer the DELETE)."""
        if self.running:
            self._proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self._proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL if still running (no deregistration); close the console."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._console is not None:
            self._console.close()
            self._console = None
        return self._proc.returncode

    # -- observation -----------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return self.ip, self.listen_port

    def console_text(self) -> str:
        try:
            return (self.root / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"process target {self.name} exited with {self._proc.returncode}:\n{self.console_text()}"
            )
        return "agent: listening on" in self.console_text()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the agent listens; raise if it died or took too long."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"process target {self.name} not ready after {timeout} s:\n{self.console_text()}")
            time.sleep(0.02)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ProcessTarget {self.name} {self.ip}:{self.listen_port} caps={','.join(self.caps)} {state}>"
