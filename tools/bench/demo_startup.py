"""Start-up time of `pifleet demo`: from process start to both demo boards online with their capabilities.

Runs `pifleet demo` twice, on the same free ports and one temporary data directory: cold (the embedded PostgreSQL runs
initdb, the boards are provisioned) and warm (same data directory). Each run ends with SIGTERM once the boards
are online. Measured from outside: process start until GET /api/devices shows blind-1 and temp-1 online with a
non-empty capabilities list. Also read: the master's own log line "demo: N boards online after X s", which
starts its clock after Python has imported pifleet. Baseline, in the same run: the cold run against the warm one.
DATABASE_URL is ignored (removed from the demo's environment): the embedded server is what is measured.

    python tools/bench/demo_startup.py [--timeout 120] [--keep]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

BOARDS = ("blind-1", "temp-1")
ANNOUNCE = re.compile(r"demo: (\d+) boards online after ([\d.]+) s")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_SETUP = re.compile(r"setup token: (\S+) \(open ")
_HEADERS: dict[str, str] = {}  # the API token, set up on the cold run from its setup token (the warm run reuses it)


def api_headers(url: str, log_path: Path) -> dict[str, str]:
    """Log in as a newcomer would: the first admin from the setup token the demo printed, then an API token."""
    if _HEADERS:
        return _HEADERS
    found = _SETUP.search(log_path.read_text())
    if found is None:
        return {}
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            r = client.post("/api/setup", json={"token": found.group(1), "name": "bench", "password": "bench-password"})
            if r.status_code != 201:
                return {}
            client.headers["X-CSRF-Token"] = r.json()["csrf"]
            token = client.post("/api/tokens", json={"name": "bench", "scope": "read"}).json()["secret"]
    except httpx.HTTPError:
        return {}  # the token is printed before the HTTP server listens: ask again at the next poll
    _HEADERS["Authorization"] = f"Bearer {token}"
    return _HEADERS


def boards_online(url: str, since: float, headers: dict[str, str]) -> bool:
    """Both boards online with capabilities, by a registration or heartbeat of this run (`since`: wall clock).

    The last_seen check matters on the warm run: rows a previous run left "online" (boards that never
    deregistered) must not count as this run's boards.
    """
    try:
        devices = httpx.get(url + "/api/devices", timeout=1, headers=headers).json()
    except (httpx.HTTPError, ValueError):
        return False
    if not isinstance(devices, list):
        return False  # 401 until the setup is done
    ready = {
        d["name"]
        for d in devices
        if d.get("online")
        and d.get("capabilities")
        and d.get("last_seen")
        and datetime.fromisoformat(d["last_seen"]).timestamp() >= since
    }
    return all(name in ready for name in BOARDS)


def leftovers(data_dir: Path) -> tuple[list[int], int | None]:
    """Processes a stopped demo should not have left: board interpreters (by their working directory, which is
    the board's flash in data_dir) and the embedded PostgreSQL (by its postmaster.pid)."""
    boards = []
    root = str((data_dir / "boards").resolve()) + os.sep
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(root):
                    boards.append(int(entry.name))
            except OSError:
                continue
    postmaster = None
    try:
        postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, 0)
    except (OSError, ValueError, IndexError):
        postmaster = None
    return boards, postmaster


def clean_up(data_dir: Path) -> bool:
    """Stop what the demo left behind, so that the next run starts from a stopped server. True if clean."""
    boards, postmaster = leftovers(data_dir)
    if not boards and postmaster is None:
        return True
    print(
        f"demo_startup: after SIGTERM the demo left {len(boards)} board process(es)"
        f"{' and its PostgreSQL' if postmaster else ''} running; stopping them"
    )
    for pid in boards:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if postmaster is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        deadline = time.monotonic() + 20
        while (data_dir / "pg" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return False


def run_once(
    data_dir: Path, ports: tuple[int, int], log_path: Path, timeout: float
) -> tuple[float, float | None, int | None, bool]:
    """One demo start: (seconds to boards online seen from outside, the master's own figure, its board count,
    whether it stopped cleanly on SIGTERM)."""
    port, coap_port = ports
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    argv = [
        sys.executable,
        "-m",
        "pifleet",
        "demo",
        "--port",
        str(port),
        "--coap-port",
        str(coap_port),
        "--data-dir",
        str(data_dir),
    ]
    with open(log_path, "w") as log:
        start, since = time.monotonic(), time.time()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while not boards_online(url, since, api_headers(url, log_path)):
            if proc.poll() is not None:
                raise SystemExit(f"demo_startup: the demo exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() - start > timeout:
                raise SystemExit(f"demo_startup: boards not online after {timeout:g} s:\n{log_path.read_text()}")
            time.sleep(0.02)
        outside = time.monotonic() - start
        own = count = None
        deadline = time.monotonic() + 5  # the announcer polls every 0.1 s; its line may trail our poll a bit
        while own is None and time.monotonic() < deadline:
            if match := ANNOUNCE.search(log_path.read_text()):
                count, own = int(match.group(1)), float(match.group(2))
            else:
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print("demo_startup: the demo did not stop within 30 s of SIGTERM; killing it")
                proc.kill()
                proc.wait()
    clean = proc.returncode == 0
    if not clean:
        print(f"demo_startup: the demo exited with {proc.returncode} after SIGTERM, not 0")
    clean = clean_up(data_dir) and clean
    return outside, own, count, clean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the boards per run")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="demo-startup-"))
    data_dir = tmp / "data"
    results = {}
    stops: list[bool] = []
    # The same command twice, as a user would run it: same ports (the boards keep the master's address from
    # their provisioning, so a warm run on another CoAP port would wait for boards that never find it).
    ports = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    try:
        for name in ("cold", "warm"):
            log_path = tmp / f"{name}.log"
            outside, own, count, clean = run_once(data_dir, ports, log_path, args.timeout)
            results[name] = (outside, own)
            stops.append(clean)
            own_text = f"{own:.2f} s ({count} boards)" if own is not None else "no 'demo: … online' line"
            print(f"{name}: boards online after {outside:.2f} s from process start; master's own figure {own_text}")
    finally:
        clean_up(data_dir)  # also after a failed run
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    cold, warm = results["cold"], results["warm"]

    def fmt(value: float | None) -> str:
        return "nan" if value is None else f"{value:.2f}"

    print(
        f"cold_s={cold[0]:.2f} warm_s={warm[0]:.2f} cold_master_s={fmt(cold[1])} warm_master_s={fmt(warm[1])} "
        f"ratio_cold_warm={cold[0] / warm[0]:.2f} clean_stops={sum(stops)}/{len(stops)}"
    )


if __name__ == "__main__":
    main()
