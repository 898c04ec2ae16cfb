"""Uploading role modules: mpy-cross checks them (errors name the line; nothing is stored), the capability
declarations are checked, versions are content hashes, builds are cached per .mpy ABI."""

from __future__ import annotations

import subprocess
import sys

from pifleet.modules.builds import mpy_abi
from tests.support.masters import REPO

RELAY = '''"""A relay."""
from machine import Pin

NAME = "relay"
VERSION = "1"
COMMANDS = {"on": {}, "off": {}}


class Relay:
    def __init__(self, cfg):
        self.pin = Pin(cfg["pin"], Pin.OUT, value=0)

    async def on(self):
        self.pin.on()
        return {"on": True}

    async def off(self):
        self.pin.off()
        return {"on": False}


def setup(cfg):
    return Relay(cfg)
'''


def upload(master, filename, source):
    return master.post("/api/modules", {"filename": filename, "source": source})


def test_upload_versions_by_content_and_refuses_syntax_errors_with_their_line(module_master):
    r = upload(module_master, "relay.py", RELAY)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["declared"] == {
        "name": "relay",
        "version": "1",
        "commands": ["off", "on"],
        "schema": {"off": {}, "on": {}},
        "config": None,
        "native": False,
        "telemetry": [],
        "state": {},
        "units": {},
    }
    assert first["latest"]
    assert first["stem"] == "relay_" + first["sha256"][:10]
    assert upload(module_master, "relay.py", RELAY).status_code == 200  # same content, same version

    changed = upload(module_master, "relay.py", RELAY.replace('VERSION = "1"', 'VERSION = "2"'))
    assert changed.status_code == 201 and changed.json()["sha256"] != first["sha256"]
    versions = module_master.get("/api/modules", params={"name": "relay"})
    assert [m["declared"]["version"] for m in versions] == ["2", "1"] and versions[0]["latest"]

    broken = RELAY.replace("        self.pin.off()", "        self.pin.off() = 1")  # line 18
    r = upload(module_master, "relay.py", broken)
    assert r.status_code == 422 and r.json()["field"] == "source"
    assert r.json()["line"] == 18 and "relay.py" in r.json()["detail"], r.json()
    assert len(module_master.get("/api/modules", params={"name": "relay"})) == 2  # nothing stored


def test_a_module_must_declare_what_the_agent_reads(module_master):
    r = upload(module_master, "lamp.py", RELAY)  # NAME says relay
    assert r.status_code == 422 and "NAME = 'lamp'" in r.json()["detail"]
    r = upload(module_master, "relay.py", RELAY.replace("def setup(cfg):", "def start(cfg):"))
    assert r.status_code == 422 and "setup(cfg)" in r.json()["detail"]
    r = upload(module_master, "Relay.py", RELAY)
    assert r.status_code == 400 and r.json()["field"] == "filename"


def test_cli_upload_prints_the_compiler_message_and_line(module_master, tmp_path):
    bad = tmp_path / "relay.py"
    bad.write_text(RELAY.replace('COMMANDS = {"on": {}, "off": {}}', 'COMMANDS = {"on": {}} = 3'))
    out = subprocess.run(
        [sys.executable, "-m", "pifleet", "module", "upload", str(bad), "--url", module_master.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env=module_master.env(),
    )
    assert out.returncode != 0
    assert "relay.py (line 6)" in out.stderr and "mpy-cross" in out.stderr, out.stderr
    good = tmp_path / "blind.py"
    good.write_text((REPO / "capabilities" / "board" / "blind.py").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "pifleet", "module", "upload", str(good), "--url", module_master.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env=module_master.env(),
    )
    version = next(line.split('"')[1] for line in good.read_text().splitlines() if line.startswith("VERSION = "))
    assert out.returncode == 0 and out.stdout.startswith(f"module blind {version} ("), out.stdout + out.stderr


def test_abi_from_what_a_board_reports():
    assert mpy_abi(2822) == "6.3"  # MicroPython 1.29's sys.implementation._mpy on the unix port
    assert mpy_abi(6 | (2 << 8)) == "6.2"
    assert mpy_abi(5) == "5"
