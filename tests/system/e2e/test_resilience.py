"""What goes wrong in a house: a board without power when its job fires, a master restarted mid-schedule."""

from __future__ import annotations

import time

from tests.support.pins import high_periods, never_both_high
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN, blind_job, later_run_done
from tests.system.e2e.test_blind_job import online_with_caps


def test_board_offline_when_the_job_fires_fails_clearly_after_its_retries(master_factory, board_factory):
    master = master_factory(command_timeout=2).start()
    board = board_factory("blind-off", master, role="blind")
    wait_until(lambda: online_with_caps(master, "blind-off"), what="board online", explain=master.log_tail)
    job = blind_job("offline", "blind-off", at_in=2.5, down_s=1, up_after_s=1, up_s=1, attempts=2, backoff_s=1)
    assert master.post("/api/jobs", job).status_code == 201
    board.kill()  # power gone before the trigger fires; the master still believes it online (lifetime 60 s)

    def finished():
        runs = master.executions("offline")
        return runs if runs and runs[0]["state"] == "failed" else None

    runs = wait_until(finished, timeout=40, what="the execution to fail", explain=master.log_tail)
    assert len(runs) == 1, "a failed run has no success follow-up"
    run = runs[0]
    assert run["attempt"] == 2 and run["max_attempts"] == 2
    assert "offline" in run["error"] or "no answer" in run["error"] or "unreachable" in run["error"], run
    device = master.device("blind-off")
    assert device["online"] is False and device["unreachable"]
    # the master is still fine: it answers and accepts work
    assert master.get("/api/jobs")[0]["name"] == "offline"


def test_follow_up_pending_across_a_master_restart_runs_once(master_factory, board_factory):
    master = master_factory().start()
    board = board_factory("blind-r", master, role="blind")
    wait_until(lambda: online_with_caps(master, "blind-r"), what="board online", explain=master.log_tail)
    job = blind_job("restart", "blind-r", at_in=2, down_s=0.5, up_after_s=8, up_s=0.5)
    assert master.post("/api/jobs", job).status_code == 201

    def first_done():
        runs = master.executions("restart")
        done = [e for e in runs if e["step"] == 0 and e["state"] == "succeeded"]
        pending = [e for e in runs if e["step"] == 1 and e["state"] == "scheduled"]
        return (done, pending) if done and pending else None

    wait_until(first_done, timeout=20, what="the first run done and its follow-up pending", explain=master.log_tail)
    master.kill()  # not a polite stop: SIGKILL while the follow-up waits in Huey's schedule (returns once gone)
    master.start()

    def follow_up_done():
        runs = master.executions("restart")
        return runs if any(e["step"] == 1 and e["state"] == "succeeded" for e in runs) else None

    runs = wait_until(follow_up_done, timeout=30, what="the follow-up after the restart", explain=master.log_tail)
    # The restart handed the follow-up to Huey a second time (recovery, beside the schedule the kill left): a run
    # planned after it went through the queue and the device's lock and finished, so that second delivery was
    # handed over before it. The short grace covers its claim (one UPDATE), as nothing marks its absence.
    later_run_done(master, "blind-r")
    time.sleep(0.5)
    runs = master.executions("restart")
    assert sorted((e["step"], e["state"]) for e in runs) == [(0, "succeeded"), (1, "succeeded")]
    history = board.pin_history()
    assert len(high_periods(history, DOWN_PIN)) == 1
    assert len(high_periods(history, UP_PIN)) == 1, "the follow-up drove the motor exactly once"
    assert never_both_high(history, UP_PIN, DOWN_PIN)
