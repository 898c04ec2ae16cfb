"""Roles as data: a role file applied with the CLI, assigned to a running board, which takes the new modules
without a reflash; configuration checked against what the modules declare; the role's jobs; telemetry."""

from __future__ import annotations

import subprocess
import sys

from tests.support.waits import wait_until

PORCH = """
name = "porch"
description = "Blind and temperature on the porch"

[modules.blind]
up_pin = 25
down_pin = 26

[modules.temperature]
pin = 34
telemetry_s = 1

[[jobs]]
name = "down-at-eight"
trigger = { type = "cron", expr = "0 20 * * *", tz = "Europe/Berlin" }
action = { capability = "blind", command = "move", params = { direction = "down", seconds = 20 } }
"""


def pifleet(master, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pifleet", *args, "--url", master.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=master.env(),
    )


def test_a_role_file_assigned_to_a_running_board(master, board_factory, tmp_path):
    board = board_factory("s1", master, role="sensor")
    wait_until(
        lambda: (d := master.device("s1")) and d["sync"] and d["sync"]["state"] == "in_sync",
        what="s1 in sync with the sensor preset",
        explain=board.console_text,
    )
    role_file = tmp_path / "porch.toml"
    role_file.write_text(PORCH)

    applied = pifleet(master, "role", "apply", str(role_file))
    assert applied.returncode == 0, applied.stderr
    assert "role porch: modules blind, temperature; jobs porch.down-at-eight" in applied.stdout

    assigned = pifleet(master, "role", "assign", "porch", "s1")
    assert assigned.returncode == 0, assigned.stdout + assigned.stderr
    assert "s1: in sync" in assigned.stdout

    device = master.device("s1")
    assert device["role"] == "porch" and sorted(c["name"] for c in device["capabilities"]) == ["blind", "temperature"]
    assert board.console_text().count("agent: listening") == 1  # no reflash, no reboot
    assert board.pin_level(25) == 0 and board.pin_level(26) == 0
    job = master.get("/api/jobs/porch.down-at-eight")
    assert job["spec"]["target"] == {"role": "porch", "device": None, "group": None, "process": None}

    # the temperature module reports by itself every second; the readings land in the database
    board.set_input(adc={34: 750_000})  # 750 mV: 25.0 °C on a TMP36
    wait_until(
        lambda: any(r["path"] == "celsius" and r["value"] == 25.0 for r in master.get("/api/devices/s1/readings")),
        what="a telemetry reading of 25.0 °C",
        explain=board.console_text,
    )

    listed = pifleet(master, "role", "list")
    assert listed.returncode == 0 and "porch" in listed.stdout and "s1" in listed.stdout


def test_a_role_that_cannot_be_right_is_refused_naming_the_field(master, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"modules": {"blind": {"up_pin": "twenty-five", "down_pin": 26}}}')
    result = pifleet(master, "role", "apply", str(bad))
    assert result.returncode == 1 and "modules.blind.up_pin" in result.stderr

    # GPIO 7 drives the ESP32's SPI flash: a board given it would crash-loop (agent/pins.py, checked here too)
    r = master.put("/api/roles/flashy", json={"modules": {"blind": {"up_pin": 7, "down_pin": 26}}})
    assert r.status_code == 422 and r.json()["field"] == "modules.blind.up_pin" and "SPI flash" in r.text

    unknown = tmp_path / "ghost.json"
    unknown.write_text('{"modules": {"teleporter": {}}}')
    result = pifleet(master, "role", "apply", str(unknown))
    assert result.returncode == 1 and "modules.teleporter" in result.stderr

    r = master.put(
        "/api/roles/jobless",
        json={
            "modules": {"blind": {"up_pin": 25, "down_pin": 26}},
            "jobs": [{"name": "x", "trigger": {"type": "manual"}, "action": {"capability": "blind", "command": "fly"}}],
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "jobs[0].action.command"
    assert master.request("GET", "/api/roles/jobless").status_code == 404  # nothing was stored

    r = master.put(
        "/api/roles/sunny",
        json={
            "modules": {"blind": {"up_pin": 25, "down_pin": 26}},
            "jobs": [
                {
                    "name": "x",
                    "trigger": {"type": "sun", "event": "sunset"},
                    "action": {"capability": "blind", "command": "stop"},
                }
            ],
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "jobs[0].trigger.event"  # no location configured
