"""Commands sent at once (POST /api/devices|roles|groups/NAME/commands, `pifleet do`): checked like a job's action,
recorded as executions with who sent them, driving a virtual blind's pins; refusals name the field, viewers get 403.
One master and one blind for the module: each test leaves the blind idle."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.masters import ADMIN
from tests.support.pins import high_periods, never_both_high
from tests.support.waits import wait_until
from tests.system.auth.conftest import session
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN
from tests.system.e2e.test_blind_job import online_with_caps


@pytest.fixture(scope="module")
def blind(module_master, tmp_path_factory):
    from pifleet.sim.board import VirtualBoard
    from tests.support.boards import flash

    board = VirtualBoard(
        "blind-1", tmp_path_factory.mktemp("boards") / "blind-1", erased=True, master=module_master.coap
    )
    board.start()
    try:
        flash(module_master, board, "blind-1", "blind", None)
        wait_until(
            lambda: online_with_caps(module_master, "blind-1"), what="blind-1 online", explain=module_master.log_tail
        )
        yield board
    finally:
        board.stop()


def pulses(board, pin: int, since: float) -> list[tuple[float, float]]:
    return high_periods(board.pin_history(), pin, since)


def cli(master, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pifleet", *args], capture_output=True, text=True, env=master.env(), timeout=120
    )


def test_a_command_runs_now_and_is_recorded_with_who_sent_it(module_master, blind):
    since = time.time()
    r = module_master.post(
        "/api/devices/blind-1/commands",
        {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 1}},
    )
    assert r.status_code == 200, r.text
    execution = r.json()
    assert execution["state"] == "succeeded" and execution["job"] is None
    assert execution["source"] == "token" and execution["actor"] == "tests"
    assert execution["result"]["direction"] == "down" and execution["result"]["stopped"] == "elapsed"
    assert r.headers["location"] == f"/api/executions/{execution['id']}"
    down = pulses(blind, DOWN_PIN, since)
    assert len(down) == 1 and abs((down[0][1] - down[0][0]) - 1.0) <= 0.1, down
    recorded = module_master.get(f"/api/executions/{execution['id']}")
    assert recorded["device"] == "blind-1" and recorded["state"] == "succeeded" and recorded["source"] == "token"
    assert execution["id"] in [e["id"] for e in module_master.get("/api/executions", params={"device": "blind-1"})]

    # a person, logged in: source person, the person's name
    person = session(module_master)
    r = person.post("/api/devices/blind-1/commands", json={"capability": "blind", "command": "position"})
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "person" and r.json()["actor"] == ADMIN


def test_refusals_name_the_field_and_record_nothing(module_master, blind):
    before = len(module_master.get("/api/executions", params={"limit": 500}))
    cases = [
        ({"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 999}}, "params.seconds"),
        (
            {"capability": "blind", "command": "move", "params": {"direction": "sideways", "seconds": 1}},
            "params.direction",
        ),
        ({"capability": "blind", "command": "move", "params": {"direction": "down"}}, "params.seconds"),
        ({"capability": "blind", "command": "goto", "params": {"position": 50, "speed": 2}}, "params.speed"),
        ({"capability": "relay", "command": "on"}, "capability"),
        ({"capability": "blind", "command": "fly"}, "command"),
    ]
    for body, field in cases:
        r = module_master.post("/api/devices/blind-1/commands", body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["field"] == field, (body, r.json())
    r = module_master.post("/api/devices/blind-1/commands", {"capability": "blind"})
    assert r.status_code == 400 and r.json()["field"] == "command"
    r = module_master.post("/api/devices/nobody/commands", {"capability": "blind", "command": "stop"})
    assert r.status_code == 404 and r.json()["field"] == "name"
    assert len(module_master.get("/api/executions", params={"limit": 500})) == before


def test_a_long_command_answers_202_and_finishes_live(module_master, blind):
    since = time.time()
    r = module_master.post(
        "/api/devices/blind-1/commands",
        {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 1.5}},
        params={"wait": 0},
    )
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "running"
    location = r.headers["location"]
    assert location == f"/api/executions/{r.json()['id']}"
    done = wait_until(
        lambda: (e := module_master.get(location))["state"] == "succeeded" and e,
        what="the move to finish",
        explain=module_master.log_tail,
    )
    assert done["result"]["direction"] == "up"
    up = pulses(blind, UP_PIN, since)
    assert len(up) == 1 and abs((up[0][1] - up[0][0]) - 1.5) <= 0.1, up


def test_a_stop_does_not_wait_for_the_move_it_stops(module_master, blind):
    since = time.time()
    r = module_master.post(
        "/api/devices/blind-1/commands",
        {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 20}},
        params={"wait": 0},
    )
    assert r.status_code == 202, r.text
    wait_until(lambda: pulses(blind, DOWN_PIN, since), what="the down pin high")
    r = module_master.post("/api/devices/blind-1/commands", {"capability": "blind", "command": "stop"})
    assert r.status_code == 200, r.text
    down = pulses(blind, DOWN_PIN, since)
    assert len(down) == 1 and down[0][1] - down[0][0] < 5, down
    assert never_both_high(blind.pin_history(), UP_PIN, DOWN_PIN)


def test_pifleet_do_moves_the_blind_to_a_position(module_master, blind):
    done = cli(module_master, "do", "blind-1", "blind.calibrate", "up_s=2", "down_s=2")
    assert done.returncode == 0, done.stderr
    assert '"up_s": 2' in done.stdout
    done = cli(module_master, "do", "blind-1", "blind.goto", "position=100")
    assert done.returncode == 0, done.stderr
    since = time.time()
    done = cli(module_master, "do", "blind-1", "blind.goto", "position=50")
    assert done.returncode == 0, done.stderr
    assert abs(json.loads(done.stdout)["position"] - 50) <= 2, done.stdout  # dead reckoning: the time it ran
    down = pulses(blind, DOWN_PIN, since)
    assert len(down) == 1 and abs((down[0][1] - down[0][0]) - 1.0) <= 0.15, down
    assert abs(json.loads(cli(module_master, "do", "blind-1", "blind.position").stdout)["position"] - 50) <= 2

    bad = cli(module_master, "do", "blind-1", "blind.goto", "position=500")
    assert bad.returncode == 1 and "params.position" in bad.stderr, bad.stderr
    bad = cli(module_master, "do", "blind-1", "blind.goto")
    assert bad.returncode == 1 and "params.position" in bad.stderr, bad.stderr
    # refused by the board itself (sent, recorded as failed): exit 1 with the board's reason
    bad = cli(module_master, "do", "blind-1", "blind.calibrate", "up_s=300")  # 300 s + over-run > max_seconds
    assert bad.returncode == 1 and "failed" in bad.stderr and "max_seconds" in bad.stderr, (bad.stdout, bad.stderr)
    r = module_master.post(
        "/api/devices/blind-1/commands", {"capability": "blind", "command": "calibrate", "params": {"up_s": 300}}
    )
    assert r.status_code == 502 and r.json()["execution"]["state"] == "failed", r.text
    assert module_master.get(r.headers["location"])["error"] == r.json()["detail"]


def test_a_group_command_runs_on_each_board_and_settles(module_master, blind):
    assert module_master.put("/api/groups/porch", {"devices": ["blind-1"]}).status_code == 200
    r = module_master.post("/api/groups/porch/commands", {"capability": "blind", "command": "position"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["execution"]["state"] == "succeeded" and answer["execution"]["device"] is None
    assert answer["execution"]["result"] == {"devices": ["blind-1"]}
    [run] = answer["devices"]
    assert run["device"] == "blind-1" and run["parent_id"] == answer["execution"]["id"] and "position" in run["result"]
    r = module_master.post("/api/roles/blind/commands", {"capability": "blind", "command": "position"})
    assert r.status_code == 200, r.text
    assert [d["device"] for d in r.json()["devices"]] == ["blind-1"]
    r = module_master.post("/api/groups/nowhere/commands", {"capability": "blind", "command": "position"})
    assert r.status_code == 404
    assert module_master.put("/api/groups/empty", {"devices": []}).status_code == 200
    r = module_master.post("/api/groups/empty/commands", {"capability": "blind", "command": "position"})
    assert r.status_code == 409 and r.json()["field"] == "name"
    done = cli(module_master, "do", "--group", "porch", "blind.position")
    assert done.returncode == 0 and "blind-1" in done.stdout and "succeeded" in done.stdout, done.stdout


def test_viewers_and_read_tokens_get_403(module_master, blind):
    admin = session(module_master)
    r = admin.post("/api/users", json={"name": "vic", "password": "vic's long password", "role": "viewer"})
    assert r.status_code == 201, r.text
    token = admin.post("/api/tokens", json={"name": "reader", "scope": "read"}).json()["secret"]
    viewer = session(module_master, "vic", "vic's long password")
    body = {"capability": "blind", "command": "stop"}
    assert viewer.post("/api/devices/blind-1/commands", json=body).status_code == 403
    r = module_master.post("/api/devices/blind-1/commands", body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    done = subprocess.run(
        [sys.executable, "-m", "pifleet", "do", "blind-1", "blind.stop"],
        capture_output=True,
        text=True,
        env=module_master.env() | {"PIFLEET_TOKEN": token},
        timeout=60,
    )
    assert done.returncode == 1 and "403" in done.stderr
