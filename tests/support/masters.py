"""`pifleet serve` as a real process (MasterProcess), set up as a person would, with REST helpers; free ports."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.waits import wait_until

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin"
ADMIN_PASSWORD = "correct horse battery"  # the tests' first admin (tests/system/auth look for it in logs and answers)
SETUP_LINE = re.compile(r"setup token: (\S+) \(open (\S+)/setup to create the first admin; it works once\)")
# the write token of the first master set up on each database: another master on it (a restart) reuses it
_TOKENS: dict[str, str] = {}
# one TLS context for all requests: httpx builds a new one for each httpx.request() otherwise, loading the CA bundle
# (50 ms of CPU a request; tools/bench/module_push.py's poll of the rollout took 0.8 s of CPU from the rollout)
_TLS = ssl.create_default_context()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (the OS picks; we check the other protocol too)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


class MasterProcess:
    """`pifleet serve` as a real process, with its own ports and data directory.

    After its first start it is set up as a person would: the first admin is created with the setup token from
    the master's log, then a `write` API token, which the REST helpers and `env()` (for CLI subprocesses) send.
    `start(setup=False)` leaves a fresh master as it is (tests/system/auth do the setup themselves)."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        *,
        command_timeout: float | None = None,
        environ: dict[str, str] | None = None,
        coap_host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.coap_port = free_port(socket.SOCK_DGRAM)
        self.coap_host = coap_host  # another address (a namespace LAN's, sim/netns.py) for boards off loopback
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / "master.log"
        self.command_timeout = command_timeout
        self.environ = environ or {}  # more environment for the master process
        self.token: str | None = None  # the write API token the helpers send
        self._log_offset = 0

    @property
    def coap(self) -> tuple[str, int]:
        return (self.coap_host, self.coap_port)

    def start(self, setup: bool = True) -> MasterProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ, DATABASE_URL=self.database_url, PYTHONUNBUFFERED="1", **self.environ)
        if self.command_timeout is not None:
            env["PIFLEET_COMMAND_TIMEOUT"] = str(self.command_timeout)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pifleet",
                "serve",
                "--port",
                str(self.port),
                "--coap-host",
                self.coap_host,
                "--coap-port",
                str(self.coap_port),
                "--data-dir",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        log.close()
        wait_until(self._ready, timeout=60, what=f"master on {self.url} (log: {self.log_path})", explain=self.log_tail)
        if setup and self.token is None:
            self.token = _TOKENS.get(self.database_url) or self._set_up()
            _TOKENS[self.database_url] = self.token
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"master exited with {self.proc.returncode}:\n{self.log_text()}")
        try:
            return httpx.get(self.url + "/api/health", timeout=1, verify=_TLS).status_code == 200
        except httpx.HTTPError:
            return False

    def setup_token(self) -> str:
        """The setup token this start printed (this start's part of the log only)."""
        found = SETUP_LINE.search(self.log_text()[self._log_offset :])
        assert found, f"no setup token line in the master's log since its start:\n{self.log_text()}"
        return found.group(1)

    def _set_up(self) -> str:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            r = client.post("/api/setup", json={"token": self.setup_token(), "name": ADMIN, "password": ADMIN_PASSWORD})
            assert r.status_code == 201, r.text
            client.headers["X-CSRF-Token"] = r.json()["csrf"]
            r = client.post("/api/tokens", json={"name": "tests", "scope": "write"})
            assert r.status_code == 201, r.text
            client.post("/api/logout").raise_for_status()
            return r.json()["secret"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a `pifleet` CLI subprocess talking to this master."""
        return dict(os.environ, PIFLEET_URL=self.url, **({"PIFLEET_TOKEN": self.token} if self.token else {}), **extra)

    def kill(self) -> None:
        """Like pulling the plug: SIGKILL, no clean-up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def assert_no_errors(self) -> None:
        """Unexpected errors in a master's log fail the test that ran it (text lines, or JSON ones)."""
        marks = (" ERROR ", '"level":"ERROR"', '"level":"CRITICAL"', "Traceback")
        lines = self.log_text().splitlines()
        errors = [n for n, line in enumerate(lines) if any(mark in line for mark in marks)]
        shown: list[str] = []  # each error with the lines under it up to the next record (its traceback)
        covered: set[int] = set()
        for n in errors:
            if n in covered:
                continue
            under = list(itertools.takewhile(lambda line: not line[:4].isdigit(), lines[n + 1 : n + 60]))
            covered.update(range(n, n + 1 + len(under)))
            shown += [lines[n], *under]
        assert not errors, "errors in the master's log:\n" + "\n".join(shown)

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_tail(self, lines: int = 150) -> str:
        """The end of the master's log, for a wait's explain=."""
        return f"master log (last {lines} lines):\n" + "\n".join(self.log_text().splitlines()[-lines:])

    # REST API helpers, with the write token
    def get(self, path: str, **kw) -> Any:
        r = self.request("GET", path, **kw)
        r.raise_for_status()
        return r.json()

    def request(self, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
        return httpx.request(
            method, self.url + path, timeout=30, headers=self.headers | (headers or {}), verify=_TLS, **kw
        )

    def post(self, path: str, json: Any = None, **kw) -> httpx.Response:
        return self.request("POST", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw) -> httpx.Response:
        return self.request("PUT", path, json=json, **kw)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def device(self, name: str) -> dict | None:
        return next((d for d in self.get("/api/devices") if d["name"] == name), None)

    def executions(self, job: str) -> list[dict]:
        return self.get("/api/executions", params={"job": job, "limit": 100})
