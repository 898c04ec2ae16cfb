"""The walking skeleton end to end: a job on a virtual blind, fired by Huey, run over CoAP, follow-up after."""

from __future__ import annotations

from tests.support.pins import high_periods, never_both_high
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN, blind_job


def online_with_caps(master, name):
    d = master.device(name)
    return d if d and d["online"] and d["capabilities"] else None


def test_job_and_follow_up_drive_the_blind_pins(master, board_factory):
    board = board_factory("blind-1", master, role="blind")
    device = wait_until(lambda: online_with_caps(master, "blind-1"), what="blind-1 online", explain=master.log_tail)
    assert device["role"] == "blind" and device["capabilities"][0]["name"] == "blind"

    job = blind_job("evening", "blind-1", at_in=3, down_s=1.0, up_after_s=1.5, up_s=0.8)
    r = master.post("/api/jobs", job)
    assert r.status_code == 201, r.text
    assert r.json()["next_run"] is not None

    def both_done():
        runs = master.executions("evening")
        return runs if len(runs) == 2 and all(e["state"] in ("succeeded", "failed") for e in runs) else None

    runs = wait_until(both_done, timeout=30, what="the job and its follow-up to finish", explain=master.log_tail)
    by_step = {e["step"]: e for e in runs}
    assert by_step[0]["state"] == "succeeded" and by_step[1]["state"] == "succeeded", runs
    assert by_step[1]["parent_id"] == by_step[0]["id"]
    assert by_step[0]["result"]["direction"] == "down" and by_step[0]["result"]["stopped"] == "elapsed"
    assert by_step[0]["attempt"] == 1 and by_step[0]["started_at"] and by_step[0]["finished_at"]

    history = board.pin_history()
    down, up = high_periods(history, DOWN_PIN), high_periods(history, UP_PIN)
    assert len(down) == 1 and len(up) == 1, (down, up)
    assert abs((down[0][1] - down[0][0]) - 1.0) <= 0.1, down
    assert abs((up[0][1] - up[0][0]) - 0.8) <= 0.1, up
    assert up[0][0] >= down[0][1] + 1.4, "the follow-up starts about 1.5 s after the first run finished"
    assert never_both_high(history, UP_PIN, DOWN_PIN)


def test_a_job_the_board_cannot_do_is_refused_and_nothing_is_saved(master, board_factory):
    board_factory("blind-2", master, role="blind")
    wait_until(lambda: online_with_caps(master, "blind-2"), what="blind-2 online", explain=master.log_tail)

    job = blind_job("bad", "blind-2", at_in=60, down_s=1, up_after_s=1, up_s=1)
    job["action"]["params"]["speed"] = 3
    r = master.post("/api/jobs", job)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "action.params.speed"

    job = blind_job("bad", "blind-2", at_in=60, down_s=1, up_after_s=1, up_s=1)
    job["follow_ups"][0]["action"]["capability"] = "relay"
    r = master.post("/api/jobs", job)
    assert r.status_code == 422 and r.json()["field"] == "follow_ups[0].action.capability"

    job = blind_job("bad", "blind-2", at_in=60, down_s=999, up_after_s=1, up_s=1)
    r = master.post("/api/jobs", job)
    assert r.status_code == 422 and r.json()["field"] == "action.params.seconds"
    assert "120" in r.json()["detail"]

    assert master.get("/api/jobs") == []
    assert master.get("/api/executions") == []
