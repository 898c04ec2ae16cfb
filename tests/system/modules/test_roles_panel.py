"""The dashboard's roles panel does what the API does: a module uploaded through its form is compiled, stored
and rolled out; a compile error is shown with its line; applying a role from its form stores it."""

from __future__ import annotations

from tests.support.masters import REPO
from tests.support.waits import wait_until


def test_module_upload_and_role_apply_through_the_panel(master, board_factory):
    board = board_factory("panel-1", master, role="blind")
    wait_until(
        lambda: (d := master.device("panel-1")) and d["sync"] and d["sync"]["state"] == "in_sync",
        what="panel-1 in sync",
        explain=board.console_text,
    )
    source = (
        REPO / "capabilities" / "board" / "blind.py"
    ).read_text() + "\n# a new version, uploaded from the dashboard\n"

    r = master.post("/ui/roles/modules", files={"data": ("blind.py", source.encode(), "text/x-python")})
    assert r.status_code == 200, r.text
    assert "rollout" in r.text and "started" in r.text
    assert 'data-board="panel-1"' in r.text  # the panel lists the role's boards with their sync state
    rollout = master.get("/api/rollouts")[0]
    assert rollout["module"] == "blind"
    wait_until(
        lambda: master.get(f"/api/rollouts/{rollout['id']}")["state"] == "succeeded",
        what="the rollout",
        explain=master.log_tail,
    )

    broken = master.post("/ui/roles/modules", files={"data": ("blind.py", b"def x(:\n", "text/x-python")})
    assert broken.status_code == 200 and "line 1" in broken.text and 'class="error"' in broken.text

    role = 'name = "hall"\n[modules.blind]\nup_pin = 25\ndown_pin = 26\n'
    applied = master.post("/ui/roles/apply", data={"role": role})
    assert applied.status_code == 200 and "role hall applied" in applied.text
    assert master.get("/api/roles/hall")["modules"] == {"blind": {"up_pin": 25, "down_pin": 26}}
