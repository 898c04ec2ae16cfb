"""Helpers for end-to-end tests: reading pin pulses off a virtual board, building job documents."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from pifleet.model import FINAL_STATES
from tests.support.waits import wait_until

UP_PIN, DOWN_PIN = 25, 26  # the blind role's preset pins on a virtual board
_markers = itertools.count(1)


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def blind_job(
    name: str,
    device: str,
    *,
    at_in: float,
    down_s: float,
    up_after_s: float,
    up_s: float,
    attempts: int = 1,
    backoff_s: float = 1,
) -> dict:
    return {
        "name": name,
        "target": {"device": device},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": down_s}},
        "trigger": {"type": "at", "at": iso_in(at_in)},
        "follow_ups": [
            {
                "on": "success",
                "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": up_s}},
                "trigger": {"type": "delay", "seconds": up_after_s},
            }
        ],
        "retry": {"attempts": attempts, "backoff_s": backoff_s},
    }


def later_run_done(master, device: str) -> dict:
    """A positive marker for "nothing more happens": a run on `device` planned now (a blind `stop`, which drives no
    pin) and finished. It went through Huey's schedule and queue after every run that was due before it, and
    through the device's lock after every run queued there, so a second delivery of an earlier run, or a run
    planned twice, has been handed to the runner by the time this one is done."""
    name = f"marker-{next(_markers)}"
    job = {
        "name": name,
        "target": {"device": device},
        "trigger": {"type": "manual"},
        "action": {"capability": "blind", "command": "stop", "params": {}},
    }
    r = master.post("/api/jobs", job)
    assert r.status_code == 201, r.text
    r = master.post(f"/api/jobs/{name}/run")
    assert r.status_code in (200, 201, 202), r.text
    run = wait_until(
        lambda: (e := master.executions(name)) and e[0]["state"] in FINAL_STATES and e[0],
        timeout=30,
        what=f"the marker run {name} on {device}",
        explain=master.log_tail,
    )
    assert run["state"] == "succeeded", run
    return run
