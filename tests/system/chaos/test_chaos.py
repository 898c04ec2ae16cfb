"""The chaos benchmark, short (tools/bench/chaos.py --boards 5 --minutes 2): blinds behind a lossy link, power cuts,
a master killed twice, PostgreSQL restarted — no run lost, no move done twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


KNOWN_FAULTS = (
    "known faults (issue 14, open): a board that gets a plan push while it runs its due runs starts a second round "
    "beside the first, whose move cuts the first's short (both recorded succeeded, ran_by board); a module push's role "
    "switch cuts a running move, which is then recorded succeeded. Fixed: eids kept in a file across power cuts "
    "(agent/executions.py), outcomes recorded through a PostgreSQL restart"
)


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    os.environ.get("PIFLEET_CHAOS") != "1",
    reason="4-9 minutes, and its targets are not always met yet: run with PIFLEET_CHAOS=1 (" + KNOWN_FAULTS + ")",
)
def test_a_short_chaos_run_loses_no_run_and_moves_no_blind_twice():
    from pifleet.sim import netns

    problem = netns.unavailable()
    if problem:
        pytest.skip(f"boards in network namespaces are not possible here: {problem}")
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench" / "chaos.py"), "--boards", "5", "--minutes", "2"],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=REPO,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"chaos.py exited with {done.returncode}:\n{done.stderr[-6000:]}"
    figures = dict(pair.split("=", 1) for pair in lines[-1].split())
    print("\n".join(lines))
    explain = f"{lines[-1]}\n{done.stderr[-6000:]}"
    assert int(figures["runs_planned"]) >= 40, explain  # 40 runs planned, and the follow-ups of those that succeeded
    assert figures["runs_final"] == figures["runs_planned"], explain
    assert figures["runs_lost"] == "0", explain
    assert figures["effects_doubled"] == "0", explain
