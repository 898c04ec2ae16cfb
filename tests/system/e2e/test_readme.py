"""The README's "Using it" block, run as written against a fresh `pifleet demo`: every command must succeed.

`tools/dev X` is `pifleet X` in the venv (tools/dev only makes sure the venv exists first), so each line runs as
`python -m pifleet X` with the rest of the line as written; the environment says where this demo is (PIFLEET_URL:
its own port, beside other tests) and keeps the CLI's stored token in the test's own directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.masters import ADMIN, ADMIN_PASSWORD, REPO, free_port
from tests.support.waits import wait_until


def using_it() -> list[list[str]]:
    """The commands of the README's "Using it" section (its first sh block), comments dropped."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block under 'Using it'"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def test_every_command_of_using_it_runs_on_a_fresh_demo(tmp_path, database_url):
    commands = using_it()
    assert all(c[0] == "tools/dev" for c in commands), commands
    assert ["tools/dev", "role", "apply", "docs/examples/porch-blind.toml"] in commands

    port, coap_port = free_port(), free_port(socket.SOCK_DGRAM)
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
        PIFLEET_URL=url,
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # where `setup` keeps the CLI's token
        XDG_RUNTIME_DIR=str(tmp_path / "run"),  # its own "USB bus": the virtual boards of other tests are not on it
        PIFLEET_USER=ADMIN,
        PIFLEET_PASSWORD=ADMIN_PASSWORD,
    )
    env.pop("PIFLEET_TOKEN", None)
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "pifleet", "demo", "--port", str(port), "--coap-port", str(coap_port)]
            + ["--data-dir", str(tmp_path / "demo"), "--no-mdns"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    try:

        def demo_log() -> str:
            return "demo log:\n" + log_path.read_text()[-6000:]

        ready = wait_until(
            lambda: "boards online" in log_path.read_text() and _setup_token(log_path),
            timeout=120,
            what="the demo's boards online and its setup token",
            explain=demo_log,
        )
        outputs = []
        for command in commands:
            args = [sys.executable, "-m", "pifleet", *command[1:]]
            done = subprocess.run(
                args, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, input=f"{ready}\n"
            )
            assert done.returncode == 0, f"{shlex.join(command)} exited {done.returncode}:\n{done.stderr}\n{demo_log()}"
            outputs.append((command, done.stdout))

        said = dict((shlex.join(c[1:3]), out) for c, out in outputs)
        assert "blind-1" in said["devices"] and "online" in said["devices"]
        assert '"direction": "down"' in said["do blind-1"]
        assert "2" in said["exec blind-1"]
        headers = {"Authorization": f"Bearer {_stored_token(tmp_path / 'config', url)}"}
        role = httpx.get(f"{url}/api/roles/porch-blind", headers=headers, timeout=30).json()
        assert sorted(role["jobs"]) == ["porch-blind.down-at-sunset", "porch-blind.up-in-the-morning"], role
        assert role["devices"] == ["blind-1"], role
        sunset = httpx.get(f"{url}/api/jobs/porch-blind.down-at-sunset", headers=headers, timeout=30).json()
        assert sunset["next_run"] is not None, sunset  # the location the README set makes the sun trigger fire
        assert "module my_blind 1" in said["module upload"]
        settings = httpx.get(f"{url}/api/settings", headers=headers, timeout=30).json()
        assert (settings["latitude"], settings["longitude"], settings["timezone"]) == (52.52, 13.4, "Europe/Berlin")
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(10)
    errors = [line for line in log_path.read_text().splitlines() if " ERROR " in line or "Traceback" in line]
    assert not errors, "errors in the demo's log:\n" + "\n".join(errors)


def _setup_token(log_path: Path) -> str | None:
    found = re.search(r"setup token: (\S+) \(open ", log_path.read_text())
    return found.group(1) if found else None


def _stored_token(config: Path, url: str) -> str:
    return json.loads((config / "pifleet" / "token").read_text())[url]
