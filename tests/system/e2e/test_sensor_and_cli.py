"""Reading a sensor through a job, and the CLI as a client of the REST API."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.masters import REPO
from tests.support.waits import wait_until
from tests.system.e2e.test_blind_job import online_with_caps


def test_a_manual_job_reads_the_temperature_into_the_execution(master, board_factory):
    board = board_factory("temp-1", master, role="sensor")
    board.set_input(adc={34: 750_000})  # 750 mV on a TMP36 → 25.0 °C
    wait_until(lambda: online_with_caps(master, "temp-1"), what="temp-1 online", explain=master.log_tail)
    job = {
        "name": "read-temp",
        "target": {"device": "temp-1"},
        "action": {"capability": "temperature", "command": "read"},
        "trigger": {"type": "manual"},
    }
    assert master.post("/api/jobs", job).status_code == 201
    assert master.get("/api/jobs/read-temp")["next_run"] is None  # manual: nothing planned

    assert master.post("/api/jobs/read-temp/run").status_code == 202
    done = wait_until(
        lambda: [e for e in master.executions("read-temp") if e["state"] == "succeeded"],
        timeout=15,
        what="the reading",
        explain=master.log_tail,
    )
    assert done[0]["result"] == {"celsius": 25.0}

    board.set_input(adc={34: 330_000})  # 330 mV → -17.0 °C
    master.post("/api/jobs/read-temp/run")
    wait_until(
        lambda: len([e for e in master.executions("read-temp") if e["state"] == "succeeded"]) == 2,
        timeout=15,
        what="the second reading",
        explain=master.log_tail,
    )
    assert master.executions("read-temp")[0]["result"] == {"celsius": -17.0}


def pifleet(master, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pifleet", *args, "--url", master.url],
        capture_output=True,
        text=True,
        timeout=30,
        env=master.env(),
    )


def test_cli_applies_lists_and_reports_errors_through_the_api(master, board_factory, tmp_path):
    board_factory("blind-1", master, role="blind")
    wait_until(lambda: online_with_caps(master, "blind-1"), what="blind-1 online", explain=master.log_tail)

    out = pifleet(master, "devices")
    assert out.returncode == 0 and "blind-1" in out.stdout and "online" in out.stdout

    example = json.loads((REPO / "docs" / "examples" / "blind-evening.json").read_text())
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(example))
    out = pifleet(master, "jobs", "apply", str(job_file))
    assert out.returncode == 0, out.stderr
    assert "job blind-evening saved; next run 20" in out.stdout
    again = pifleet(master, "jobs", "apply", str(job_file))  # idempotent by name
    assert again.returncode == 0
    assert len(master.get("/api/jobs")) == 1
    assert len(master.get("/api/executions/upcoming")) == 1, "re-applying does not plan a second run"

    out = pifleet(master, "jobs", "list")
    assert "blind-evening" in out.stdout and "blind.move" in out.stdout

    example["action"]["params"]["seconds"] = 500
    job_file.write_text(json.dumps(example))
    out = pifleet(master, "jobs", "apply", str(job_file))
    assert out.returncode != 0
    assert "action.params.seconds" in out.stderr and "between 0.1 and 120" in out.stderr
