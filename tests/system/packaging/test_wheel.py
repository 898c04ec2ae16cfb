"""The package as a new user gets it: the wheel built from this checkout, installed into a fresh venv outside
the checkout, runs `pifleet demo` from another directory and brings both demo boards online — so the wheel
carries everything pifleet needs at run time (migrations, dashboard, agent, capability modules).

The figures (wheel size, install time without byte-compiling) are printed in one name=value line (`pytest -s`
shows it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.masters import ADMIN, ADMIN_PASSWORD, REPO, SETUP_LINE, free_port
from tests.support.waits import wait_until

DEMO_BOARDS = {"blind-1", "temp-1"}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _sources(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in a directory of their own: the build never sees
    an old build/ or egg-info, and writes none into the checkout."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted but not yet committed is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _user_env() -> dict[str, str]:
    """A shell's environment without this checkout's venv or test database: the demo starts its own PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.timeout(300)
def test_the_wheel_installed_in_a_fresh_venv_runs_the_demo(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("needs the git checkout to list the sources the wheel is built from")
    dist = tmp_path / "dist"
    # PIP_NO_COMPILE: nothing byte-compiles the isolated build environment's setuptools or the fresh venv's
    # packages (Python compiles what the demo imports when it imports it); on 2 busy cores that was most of
    # the test's time. The wheel and the packages in the venv are the same either way.
    quick = dict(os.environ, PIP_NO_COMPILE="1")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(_sources(tmp_path / "src"))],
        env=quick,
    )
    (wheel,) = dist.glob("pifleet-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    for data in ("sql/0001_init.sql", "dashboard/templates", "micropython/agent/", "capabilities/board/blind.py"):
        assert any(n.startswith(f"pifleet/_data/{data}") for n in names), f"the wheel lacks {data}: {names}"

    # A fresh venv without a pip of its own (ensurepip alone took longer than the install): this checkout's pip
    # installs the wheel and its dependencies into it (`pip --python`).
    venv = tmp_path / "venv"
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    _run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)], env=quick
    )
    install_s = time.monotonic() - started

    # the embedded PostgreSQL, started as root, loosens its parent directories: not pytest's (as tests/conftest.py)
    data_dir = Path(os.environ.get("PIFLEET_TEST_TMP", "/tmp")) / f"pifleet-wheel-{uuid.uuid4().hex[:12]}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port, coap_port = free_port(), free_port(socket.SOCK_DGRAM)
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        demo = subprocess.Popen(
            [
                venv / "bin" / "pifleet",
                "demo",
                "--port",
                str(port),
                "--coap-port",
                str(coap_port),
                "--data-dir",
                data_dir,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=elsewhere,
            env=_user_env(),
        )

    def log_tail() -> str:
        return "demo log (last 80 lines):\n" + "\n".join(log_path.read_text().splitlines()[-80:])

    def healthy() -> bool:
        assert demo.poll() is None, f"the demo exited with {demo.returncode}\n{log_tail()}"
        try:
            return httpx.get(url + "/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=90, what=f"the installed demo's health on {url}", explain=log_tail)
        token = wait_until(lambda: SETUP_LINE.search(log_path.read_text()), what="the setup token", explain=log_tail)
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/api/setup", json={"token": token.group(1), "name": ADMIN, "password": ADMIN_PASSWORD})
            assert r.status_code == 201, r.text
            r = client.post(
                "/api/tokens", json={"name": "smoke", "scope": "read"}, headers={"X-CSRF-Token": r.json()["csrf"]}
            )
            assert r.status_code == 201, r.text
            api_token = r.json()["secret"]

        def online() -> set[str]:
            r = httpx.get(url + "/api/devices", headers={"Authorization": f"Bearer {api_token}"}, timeout=10)
            r.raise_for_status()
            names = {d["name"] for d in r.json() if d["online"]}
            return DEMO_BOARDS <= names and names

        wait_until(
            online, timeout=90, what=f"both demo boards ({', '.join(sorted(DEMO_BOARDS))}) online", explain=log_tail
        )
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert demo.returncode == 0, log_tail()
    errors = [line for line in log_path.read_text().splitlines() if " ERROR " in line or "Traceback" in line]
    assert not errors, "errors in the demo's log:\n" + "\n".join(errors)
    print(f"\nwheel_kb={wheel.stat().st_size / 1024:.0f} install_s={install_s:.1f}")
