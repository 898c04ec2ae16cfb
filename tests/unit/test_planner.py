"""What follows a run's outcome, as the planner decides it: retries and backoff, follow-ups (conditions, filled
parameters, targets, times), jobs triggered `after` it, a role/group run's devices and settlement, and recovery
of runs a stopped master interrupted. Pure decisions: no database, no clock but the one given."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pifleet.jobs import planner
from pifleet.model import DeviceRead, JobRead, JobSpec

AT = datetime(2026, 11, 26, 19, 0, 5, tzinfo=UTC)  # 20:00:05 in Berlin
BERLIN = "Europe/Berlin"


def spec(**kw) -> JobSpec:
    base = {
        "name": "blind-down",
        "target": {"device": "blind-1"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 5}},
        "trigger": {"type": "manual"},
    }
    return msgspec.convert(base | kw, JobSpec)


def follow(on="success", **kw) -> dict:
    return {
        "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 5}},
        "trigger": {"type": "next", "time": "07:00", "tz": BERLIN},
        "on": on,
    } | kw


def job(name: str, on: str, enabled: bool = True, job_id: int = 1) -> JobRead:
    return JobRead(
        id=job_id,
        name=name,
        enabled=enabled,
        paused=False,
        spec=spec(name=name, trigger={"type": "after", "job": "blind-down", "on": on}, enabled=enabled),
        next_run=None,
        created_at=AT,
        updated_at=AT,
    )


def row(**kw) -> dict:
    base = {"id": uuid.uuid4(), "job_id": 1, "parent_id": None, "step": 0, "device_id": "vb-1"}
    return base | {"attempt": 1, "max_attempts": 1} | kw


# ---- retries ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt, max_attempts, backoff_s, delay_s",
    [(1, 3, 10, 10), (2, 3, 10, 20), (3, 5, 10, 40), (1, 2, 0, 0), (4, 20, 1.5, 12)],
)
def test_a_failed_attempt_is_retried_with_doubling_backoff(attempt, max_attempts, backoff_s, delay_s):
    assert planner.retry_at(attempt, max_attempts, backoff_s, AT) == AT + timedelta(seconds=delay_s)


@pytest.mark.parametrize("attempt, max_attempts", [(1, 1), (3, 3), (4, 3)])
def test_the_last_attempt_is_not_retried(attempt, max_attempts):
    assert planner.retry_at(attempt, max_attempts, 10, AT) is None


# ---- follow-ups -------------------------------------------------------------------------------------------------


def test_a_success_plans_the_blind_up_at_07_00_next_morning_in_berlin():
    runs = planner.follow_ups(spec(follow_ups=[follow()]), "succeeded", {"moved": 5}, AT)
    assert len(runs) == 1
    up = runs[0]
    assert (up.step, up.state, up.error) == (1, "scheduled", None)
    assert up.when == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    assert (up.capability, up.command, up.params) == ("blind", "move", {"direction": "up", "seconds": 5})
    assert up.device is None  # the device the run ran on


@pytest.mark.parametrize(
    "state, planned_steps",
    [("succeeded", [1, 3]), ("failed", [2, 3]), ("timed_out", [2, 3])],
)
def test_follow_ups_by_outcome_keep_their_step(state, planned_steps):
    s = spec(follow_ups=[follow("success"), follow("failure"), follow("always")])
    assert [r.step for r in planner.follow_ups(s, state, {}, AT)] == planned_steps


@pytest.mark.parametrize("state", ["skipped", "missed", "cancelled"])
def test_nothing_follows_a_run_that_did_not_run(state):
    s = spec(follow_ups=[follow("success"), follow("failure"), follow("always")])
    assert planner.follow_ups(s, state, None, AT) == []
    assert planner.outcome(state) is None


def test_parameters_are_filled_from_the_result():
    params = {"direction": "up", "seconds": {"$result": "moved"}}
    f = follow(action={"capability": "blind", "command": "move", "params": params})
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {"moved": 7.5}, AT)
    assert run.state == "scheduled" and run.params == {"direction": "up", "seconds": 7.5}


def test_a_parameter_that_cannot_be_filled_is_recorded_as_failed_naming_it():
    params = {"direction": "up", "seconds": {"$result": "moved"}}
    f = follow(action={"capability": "blind", "command": "move", "params": params})
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {"position": 0}, AT)
    assert run.state == "failed"
    assert run.error.startswith("cannot fill parameter params.seconds:") and "'moved'" in run.error


def test_a_condition_not_met_is_recorded_as_skipped_with_the_value():
    f = follow(when={"path": "celsius", "above": 28})
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {"celsius": 21.5}, AT)
    assert run.state == "skipped"
    assert run.error == "skipped: condition not met: celsius=21.5 is not above 28.0"


def test_a_condition_met_plans_the_follow_up():
    f = follow(when={"path": "celsius", "above": 28})
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {"celsius": 29.5}, AT)
    assert run.state == "scheduled" and run.error is None


def test_a_condition_on_a_missing_value_skips_and_says_so():
    f = follow(when={"path": "rows.3.value", "equals": "x"})
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {"rows": []}, AT)
    assert run.state == "skipped" and "'rows.3.value'" in run.error


def test_a_follow_up_on_another_device_names_it():
    f = follow(target={"device": "lamp-1"}, trigger={"type": "delay", "seconds": 90})
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {}, AT)
    assert run.device == "lamp-1"
    assert run.when == AT + timedelta(seconds=90)


def test_a_follow_up_at_a_clock_time_already_past_today_is_tomorrow():
    f = follow(trigger={"type": "next", "time": "19:30", "tz": BERLIN})  # finished at 20:00:05 Berlin
    (run,) = planner.follow_ups(spec(follow_ups=[f]), "succeeded", {}, AT)
    assert run.when == datetime(2026, 11, 27, 18, 30, tzinfo=UTC)


# ---- jobs triggered `after` -------------------------------------------------------------------------------------


def test_dependents_by_outcome():
    jobs = [job("on-ok", "success"), job("on-fail", "failure"), job("on-any", "always"), job("off", "always", False)]
    assert [j.name for j in planner.dependents(jobs, "success")] == ["on-ok", "on-any"]
    assert [j.name for j in planner.dependents(jobs, "failure")] == ["on-fail", "on-any"]
    assert planner.dependents(jobs, planner.outcome("skipped")) == []


@pytest.mark.parametrize(
    "state, outcome",
    [("succeeded", "success"), ("failed", "failure"), ("timed_out", "failure"), ("missed", None)],
)
def test_what_a_final_state_means(state, outcome):
    assert planner.outcome(state) == outcome


# ---- role/group runs --------------------------------------------------------------------------------------------


def test_a_role_run_settles_succeeded_when_every_device_succeeded():
    assert planner.settlement(["succeeded"] * 3) == planner.Settlement("succeeded", None)


@pytest.mark.parametrize(
    "states, error",
    [
        (["succeeded", "failed", "succeeded"], "1 of 3 devices did not succeed"),
        (["timed_out", "skipped", "succeeded"], "2 of 3 devices did not succeed"),
        (["missed"], "1 of 1 devices did not succeed"),
    ],
)
def test_a_role_run_fails_when_a_device_did_not_succeed(states, error):
    assert planner.settlement(states) == planner.Settlement("failed", error)


@pytest.mark.parametrize("states", [[], ["succeeded", "running"], ["failed", "scheduled"], ["dispatched"]])
def test_a_role_run_is_not_settled_while_a_device_is_still_to_come(states):
    assert planner.settlement(states) is None


def _device(name: str) -> DeviceRead:
    return DeviceRead(
        id=f"id-{name}",
        name=name,
        kind="pifleet.esp32",
        role="blind",
        online=True,
        last_seen=None,
        address=None,
        port=None,
        firmware=None,
        mpy=None,
        agent_version=None,
        unreachable=None,
        capabilities=[],
    )


def test_a_role_run_fans_out_to_every_device_at_once():
    decision = planner.fan_out("role blind", [_device("a"), _device("b"), _device("c")], AT)
    assert decision.state is None
    assert decision.runs == [planner.MemberRun(f"id-{n}", AT) for n in "abc"]
    assert decision.result == {"devices": ["a", "b", "c"]}


def test_a_role_with_no_device_is_skipped():
    decision = planner.fan_out("role blind", [], AT)
    assert (decision.runs, decision.state, decision.error) == ([], "skipped", "skipped: no device in role blind")


# ---- recovery after a stop ------------------------------------------------------------------------------------


def test_an_interrupted_role_run_is_settled_by_its_devices():
    assert planner.recovery(row(device_id=None), AT).action == "settle"


def test_an_interrupted_run_with_attempts_left_runs_again_at_once():
    decision = planner.recovery(row(attempt=1, max_attempts=2), AT)
    assert decision == planner.Recovery("retry", AT, planner.interrupted_error())


@pytest.mark.parametrize("parent", [None, uuid.uuid4()])
def test_an_interrupted_run_on_its_last_attempt_failed(parent):
    decision = planner.recovery(row(attempt=2, max_attempts=2, parent_id=parent), AT)
    assert decision.action == "fail" and "interrupted" in decision.error
