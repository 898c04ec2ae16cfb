"""The fleet benchmark, small (tools/bench/fleet_scale.py --boards 3): boards flashed through a master, all of
them back online after a power cut, the master's memory and idle CPU read, one role job moving every blind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(300)
def test_a_small_fleet_comes_back_after_a_power_cut_and_moves_together(pg_url):
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench" / "fleet_scale.py"), "--boards", "3", "--idle", "2", "--runs",
         "1", "--flash-parallel", "3", "--settle", "0"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=REPO,
        env=dict(os.environ, DATABASE_URL=pg_url),  # the session's PostgreSQL: no initdb of its own
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"fleet_scale.py exited with {done.returncode}:\n{done.stderr[-6000:]}"
    figures = dict(pair.split("=", 1) for pair in lines[-1].split())
    beside = dict(pair.split("=", 1) for pair in lines[-2].split())
    explain = f"{done.stdout}\n{done.stderr[-6000:]}"
    assert set(figures) == {"boards", "master_rss_mb", "idle_cpu_percent", "all_online_s", "role_job_spread_ms"}
    assert figures["boards"] == "3", explain
    assert float(figures["all_online_s"]) < 60, explain  # every board registered again after power-on
    assert 0 < float(figures["master_rss_mb"]) <= 200, explain
    assert float(figures["idle_cpu_percent"]) >= 0, explain
    assert beside["role_job_moved"] == "3", explain  # every blind's down pin rose
    assert 0 <= float(figures["role_job_spread_ms"]) < 5000, explain
