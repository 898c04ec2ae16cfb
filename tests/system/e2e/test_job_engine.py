"""The job engine's life cycle, seen from the API and the board's pins: misfires across a restart, pause,
cancel, dry-run, the timeline, per-device concurrency, timeouts."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta

from pifleet.model import FINAL_STATES
from tests.support.pins import high_periods, never_both_high
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN, iso_in, later_run_done
from tests.system.e2e.test_blind_job import online_with_caps


def move(name, device, *, at_in=None, direction="down", seconds=0.5, **extra) -> dict:
    trigger = {"type": "at", "at": iso_in(at_in)} if at_in is not None else {"type": "manual"}
    return {
        "name": name,
        "target": {"device": device},
        "trigger": trigger,
        "action": {"capability": "blind", "command": "move", "params": {"direction": direction, "seconds": seconds}},
        **extra,
    }


def final(master, job, n=1):
    def done():
        runs = [e for e in master.executions(job) if e["state"] in FINAL_STATES]
        return runs if len(runs) >= n else None

    return wait_until(done, timeout=30, what=f"{n} finished run(s) of {job}", explain=master.log_tail)


def blind(master, board_factory, name="blind-1", **kw):
    board = board_factory(name, master, role="blind", **kw)
    wait_until(lambda: online_with_caps(master, name), what=f"{name} online", explain=master.log_tail)
    return board


def test_misfire_policies_across_a_master_outage(master_factory, board_factory):
    master = master_factory().start()
    board = blind(master, board_factory)
    assert master.post("/api/jobs", move("late-ok", "blind-1", at_in=3, misfire={"grace_s": 120})).status_code == 201
    assert (
        master.post(
            "/api/jobs", move("late-skip", "blind-1", at_in=3, direction="up", misfire={"policy": "skip"})
        ).status_code
        == 201
    )
    master.kill()  # the master is down when both are due
    # Time itself is under test here: how late the master comes back decides each policy. Due at +3 s, it comes
    # back ~7 s late (more than skip's 5 s, less than grace_s 120 s); nothing else can stand for a duration.
    time.sleep(10)
    master.start()
    late_ok, late_skip = final(master, "late-ok")[0], final(master, "late-skip")[0]
    assert late_ok["state"] == "succeeded", late_ok
    assert late_skip["state"] == "missed" and "misfire policy skip" in late_skip["error"], late_skip
    # Each ran once: a run planned after both went through the queue and finished, so a second delivery of
    # either (Huey's schedule beside the recovery's) was handed over before it. A duplicate needs one claim
    # (an UPDATE) to show as a run or a pulse; the short grace covers that, as nothing marks its absence.
    later_run_done(master, "blind-1")
    time.sleep(0.5)
    assert len(master.executions("late-ok")) == 1 and len(master.executions("late-skip")) == 1
    history = board.pin_history()
    assert len(high_periods(history, DOWN_PIN)) == 1 and high_periods(history, UP_PIN) == []


def test_pause_resume_cancel_and_dry_run(master, board_factory):
    board = blind(master, board_factory)
    # a document not saved yet: checked as saving would, its next five runs, nothing saved
    doc = move("draft", "blind-1", trigger={"type": "every", "seconds": 60})
    draft = master.post("/api/jobs/dry-run", doc).json()
    assert len(draft["next_runs"]) == 5 and draft["sends"][0]["uri"].endswith("/a/blind/move")
    bad = master.post("/api/jobs/dry-run", dict(doc, trigger={"type": "cron", "expr": "61 * * * *"}))
    assert bad.status_code == 422 and bad.json()["field"] == "trigger.expr", bad.text
    assert master.request("GET", "/api/jobs/draft").status_code == 404
    assert master.post("/api/jobs", move("manual", "blind-1")).status_code == 201

    dry = master.post("/api/jobs/manual/dry-run").json()
    assert dry["target"] == "device blind-1" and dry["next_runs"] == []
    (send,) = dry["sends"]
    assert send["uri"].endswith("/a/blind/move") and send["payload"]["params"] == {"direction": "down", "seconds": 0.5}
    assert send["payload"]["ep"] == board.device_id and send["online"] is True

    assert master.post("/api/jobs/manual/pause").json()["paused"] is True
    master.post("/api/jobs/manual/run")
    assert final(master, "manual")[0]["state"] == "skipped"
    master.post("/api/jobs/manual/resume")
    master.post("/api/jobs/manual/run")
    runs = final(master, "manual", 2)
    assert sorted(e["state"] for e in runs) == ["skipped", "succeeded"]

    assert master.post("/api/jobs", move("later", "blind-1", at_in=3600)).status_code == 201
    planned = master.get("/api/executions", params={"job": "later", "state": "scheduled"})
    assert len(planned) == 1
    cancelled = master.post(f"/api/executions/{planned[0]['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = master.post(f"/api/executions/{planned[0]['id']}/cancel")
    assert again.status_code == 409 and again.json()["field"] == "execution_id"
    assert len(high_periods(board.pin_history(), DOWN_PIN)) == 1, "only the resumed run moved the blind"


def test_timeline_shows_the_evening_run_and_the_next_mornings_follow_up(master, board_factory):
    blind(master, board_factory)
    job = move("evening", "blind-1", seconds=5)
    job["trigger"] = {"type": "cron", "expr": "0 20 * * *", "tz": "Europe/Berlin"}
    job["follow_ups"] = [
        {
            "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 5}},
            "trigger": {"type": "next", "time": "07:00", "tz": "Europe/Berlin"},
        }
    ]
    assert master.post("/api/jobs", job).status_code == 201
    entries = master.get("/api/timeline", params={"days": 3})
    evenings = [e for e in entries if not e["follow_up"]]
    mornings = [e for e in entries if e["follow_up"]]
    assert len(evenings) == 3 and evenings[0]["kind"] == "planned" and evenings[1]["kind"] == "projected"
    assert len(mornings) >= 2
    for e in evenings:
        local = datetime.fromisoformat(e["at"]).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (20, 0)
    first_evening = datetime.fromisoformat(evenings[0]["at"])
    first_morning = min(
        datetime.fromisoformat(e["at"]) for e in mornings if datetime.fromisoformat(e["at"]) > first_evening
    )
    assert timedelta(hours=10) < first_morning - first_evening < timedelta(hours=12)
    assert master.get("/api/timeline", params={"days": 3, "device": "nobody"}) == []


def test_concurrency_refuse_and_queue_on_one_blind(master, board_factory):
    board = blind(master, board_factory)
    master.post("/api/jobs", move("long", "blind-1", at_in=2.5, seconds=2))
    master.post("/api/jobs", move("refused", "blind-1", at_in=3.5, direction="up", concurrency="refuse"))
    master.post("/api/jobs", move("queued", "blind-1", at_in=3.5, direction="up", seconds=0.5))
    assert final(master, "long")[0]["state"] == "succeeded"
    assert final(master, "refused")[0]["state"] == "skipped"
    assert final(master, "queued")[0]["state"] == "succeeded"
    history = board.pin_history()
    (down,), (up,) = high_periods(history, DOWN_PIN), high_periods(history, UP_PIN)
    assert up[0] >= down[1], "the queued move started only after the long one ended"
    assert never_both_high(history, UP_PIN, DOWN_PIN)


def test_a_frozen_board_times_out(master_factory, board_factory):
    master = master_factory(command_timeout=1.5).start()
    board = blind(master, board_factory)
    master.post("/api/jobs", move("frozen", "blind-1", timeout_s=1.5))
    os.kill(board.pid, signal.SIGSTOP)  # alive but silent: no answer, no ICMP error
    try:
        master.post("/api/jobs/frozen/run")
        run = final(master, "frozen")[0]
    finally:
        os.kill(board.pid, signal.SIGCONT)
    assert run["state"] == "timed_out" and "no answer" in run["error"], run
    assert master.device("blind-1")["online"] is False
