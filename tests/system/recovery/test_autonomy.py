"""Offline autonomy (issue 14, item 3): the board keeps its timed runs while the master is away.

The issue's story — the master is stopped at 19:59:50, the board runs the 20:00 down move itself by 20:00:30, the
master comes back: one execution, ran_by board, its 07:00 follow-up planned, one move on the pin; a master back at
20:00:10 sends the run itself: still one move — with short times: the run is due a few seconds after the job is
saved, the board's grace is 3 s; in the second case the master is frozen (SIGSTOP) from just before the instant
until 2 s after it, and the board's grace is 10 s.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime

import pytest

from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN, blind_job
from tests.system.e2e.test_blind_job import online_with_caps

# a master started, a board flashed through it, the master stopped and started again: minutes on a loaded CI machine
pytestmark = pytest.mark.timeout(300)


def planned(board, runs: int, before: int) -> bool:
    return board.console_text().count(f"plan: {runs} runs planned") > before


def the_run(master, job: str) -> list[dict]:
    return [e for e in master.executions(job) if e["step"] == 0]


def planned_down_move(master, board_factory, name: str, job_name: str, down_s: float):
    """A blind board, and a job whose down move is due 8 s from now with a 2 s grace, in the board's plan:
    (board, the run, its instant in unix seconds)."""
    board = board_factory(name, master, role="blind", lifetime=15)
    wait_until(lambda: online_with_caps(master, name), what=f"{name} online", explain=master.log_tail)
    before = board.console_text().count("plan: 1 runs planned")
    job = blind_job(job_name, name, at_in=8, down_s=down_s, up_after_s=3600, up_s=0.5)
    job["autonomy_grace_s"] = 2
    assert master.post("/api/jobs", job).status_code == 201
    wait_until(lambda: planned(board, 1, before), timeout=10, what=f"{name}'s plan", explain=board.console_text)
    run = the_run(master, job_name)[0]
    return board, run, datetime.fromisoformat(run["scheduled_for"]).timestamp()


def test_the_board_runs_its_timed_run_itself_while_the_master_is_away_and_once(master, board_factory):
    board = board_factory("au1", master, role="blind", lifetime=15)
    wait_until(lambda: online_with_caps(master, "au1"), what="au1 online", explain=master.log_tail)
    before = board.console_text().count("plan: 1 runs planned")
    job = blind_job("evening", "au1", at_in=8, down_s=0.5, up_after_s=3600, up_s=0.5)
    job["autonomy_grace_s"] = 3
    assert master.post("/api/jobs", job).status_code == 201
    # the job's save sends the board its plan: one run, the down move
    wait_until(lambda: planned(board, 1, before), timeout=10, what="au1's plan", explain=board.console_text)
    run = the_run(master, "evening")[0]
    master.kill()  # the Pi goes away just before the run is due

    wait_until(
        lambda: "plan: ran %s blind.move myself" % run["id"] in board.console_text(),
        timeout=20,
        what="au1 to run the move by itself within its grace",
        explain=board.console_text,
    )
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [0.5]

    master.start()
    done = wait_until(
        lambda: (r := the_run(master, "evening")) and r[0]["state"] == "succeeded" and r[0]["ran_by"] == "board" and r,
        timeout=40,
        what="the master to record the board's run",
        explain=master.log_tail,
    )
    assert len(done) == 1 and done[0]["id"] == run["id"], done
    follow_up = wait_until(
        lambda: [e for e in master.executions("evening") if e["step"] == 1],
        what="the follow-up of the board's run",
        explain=master.log_tail,
    )
    assert len(follow_up) == 1 and follow_up[0]["state"] == "scheduled", follow_up
    # the board does not keep it to report again, and nothing moved twice
    wait_until(
        lambda: "plan: 0 runs planned, 0 done" in board.console_text(),
        timeout=30,
        what="au1's report acknowledged",
        explain=board.console_text,
    )
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [0.5]


def test_a_master_back_within_the_grace_sends_the_run_itself_and_the_board_does_not(master, board_factory):
    board = board_factory("au2", master, role="blind", lifetime=15)
    wait_until(lambda: online_with_caps(master, "au2"), what="au2 online", explain=master.log_tail)
    before = board.console_text().count("plan: 1 runs planned")
    job = blind_job("evening2", "au2", at_in=8, down_s=0.5, up_after_s=3600, up_s=0.5)
    job["autonomy_grace_s"] = 10
    assert master.post("/api/jobs", job).status_code == 201
    wait_until(lambda: planned(board, 1, before), timeout=10, what="au2's plan", explain=board.console_text)
    run = the_run(master, "evening2")[0]
    due = datetime.fromisoformat(run["scheduled_for"]).timestamp()
    # the master is away from just before the run's instant until just after it (frozen: no answer to anything),
    # then back within the board's grace: its alarm sends the run, late
    zero_before = board.console_text().count("plan: 0 runs planned")
    master.proc.send_signal(signal.SIGSTOP)
    try:
        while time.time() < due + 2:  # the instant itself is what is waited for
            time.sleep(0.1)
    finally:
        master.proc.send_signal(signal.SIGCONT)
    done = wait_until(
        lambda: (r := the_run(master, "evening2")) and r[0]["state"] == "succeeded" and r,
        timeout=40,
        what="the master to send the run itself",
        explain=master.log_tail,
    )
    assert done[0]["ran_by"] == "master", done
    # the board learns that the master sent it: a new plan without it, or, past the grace, the command it remembers
    wait_until(
        lambda: (
            f"plan: {run['id']} came from the master" in (c := board.console_text())
            or c.count("plan: 0 runs planned") > zero_before
        ),
        timeout=40,
        what="au2 to know the run is done",
        explain=board.console_text,
    )
    while time.time() < due + 10 + 3:  # past the board's grace: it ran nothing by itself
        time.sleep(0.2)
    assert "blind.move myself" not in board.console_text()
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [0.5]


def test_the_board_leaves_a_run_to_the_master_while_a_command_of_its_moves_the_blind(master, board_factory):
    """A planned run's grace passes while a person's 8 s move is under way on the board and the master does not answer
    (frozen): the command under way says the master is there, and the board's own move would cut it short, so the
    board leaves the run to the master. Back after the move, the master sends it: each move once, whole (chaos.py: a
    board ran its planned run over a follow-up the master had just sent it, which was recorded succeeded, cut)."""
    board, run, due = planned_down_move(master, board_factory, "au3", "evening3", down_s=0.5)
    while time.time() < due - 2:
        time.sleep(0.05)
    up = {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 8}}
    person = threading.Thread(target=lambda: master.post("/api/devices/au3/commands", up))
    person.start()
    wait_until(lambda: board.pin_level(UP_PIN) == 1, timeout=5, interval=0.02, what="au3 moving up")
    master.proc.send_signal(signal.SIGSTOP)  # from before the run's instant until the move is over
    try:
        wait_until(
            lambda: f"plan: {run['id']} blind.move not sent, but the master answers" in board.console_text(),
            timeout=10,
            what="au3 to leave the run to the master at its grace",
            explain=board.console_text,
        )
        wait_until(lambda: board.pin_level(UP_PIN) == 0, timeout=10, what="the up move over")
    finally:
        master.proc.send_signal(signal.SIGCONT)
    person.join(60)
    done = wait_until(
        lambda: (r := the_run(master, "evening3")) and r[0]["state"] == "succeeded" and r,
        timeout=40,
        what="the master to send the run itself",
        explain=master.log_tail,
    )
    assert done[0]["ran_by"] == "master", done
    assert "blind.move myself" not in board.console_text()
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), UP_PIN)] == [8.0]
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [0.5]


def test_a_command_sent_while_the_board_runs_its_own_run_waits_for_that_move(master, board_factory):
    """The mirror of the test above: the board runs its planned run itself (the master frozen at the instant), and the
    master, back in the middle of that move, sends a person's command: it waits until the board's own move is over,
    which it would have cut short (chaos.py: a board's own 1.7 s run was replaced 0.7 s in, and recorded succeeded)."""
    board, run, due = planned_down_move(master, board_factory, "au4", "evening4", down_s=4)
    while time.time() < due - 2:
        time.sleep(0.05)
    master.proc.send_signal(signal.SIGSTOP)  # away from before the instant until the board's own move has begun
    try:
        wait_until(lambda: board.pin_level(DOWN_PIN) == 1, timeout=20, interval=0.02, what="au4 moving down by itself")
    finally:
        master.proc.send_signal(signal.SIGCONT)
    up = {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 0.5}}
    answer = master.post("/api/devices/au4/commands", up)
    assert answer.status_code in (200, 202), answer.text  # 202: still under way when the API stopped waiting
    wait_until(
        lambda: high_periods(board.pin_history(), UP_PIN) and board.pin_level(UP_PIN) == 0,
        timeout=20,
        what="the person's up move over",
        explain=board.console_text,
    )
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [4.0]
    (down_end,) = [b for _, b in high_periods(board.pin_history(), DOWN_PIN)]
    (up_start, up_end), *rest = high_periods(board.pin_history(), UP_PIN)
    assert rest == [] and round(up_end - up_start, 1) == 0.5 and up_start >= down_end
    # one run, succeeded: the master's own send of it, held until the board's move was over, was answered with the
    # board's outcome (a duplicate: nothing moved again)
    done = wait_until(
        lambda: (r := the_run(master, "evening4")) and r[0]["state"] == "succeeded" and r,
        timeout=40,
        what="the run recorded",
        explain=master.log_tail,
    )
    assert len(done) == 1, done
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [4.0]
