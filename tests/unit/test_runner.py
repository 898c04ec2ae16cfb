"""The runner in-process: a real PostgreSQL, a fake board link, a recording queue in place of Huey, a clock the
test moves. Each test looks at what a user would see: the execution rows, and what is planned for when."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import msgspec
import pytest

from pifleet.devices.registry import Registry
from pifleet.errors import BoardError, BoardTimeoutError, ConflictError
from pifleet.events import EventHub
from pifleet.jobs.runner import Runner
from pifleet.jobs.service import JobService
from pifleet.model import JobSpec
from pifleet.storage import devices as devices_q
from pifleet.storage import jobs as q
from tests.unit.conftest import FakeLink, RecordingQueue

BLIND_CAP = {
    "name": "blind",
    "version": "1",
    "commands": {
        "move": {
            "direction": {"type": "enum", "values": ["up", "down"]},
            "seconds": {"type": "number", "min": 0.1, "max": 120, "unit": "s"},
        },
        "stop": {},
    },
}
BOARDS = ("blind-1", "blind-2", "blind-3")


@pytest.fixture(scope="module")
async def fleet(pool):
    """Three online blinds with the role `blind` (ids vb-blind-N)."""
    await devices_q.ensure_role(pool, "blind")
    for i, name in enumerate(BOARDS, start=1):
        await devices_q.upsert_registration(
            pool,
            device_id=f"vb-{name}",
            name=name,
            kind="pifleet.esp32",
            role="blind",
            address=f"127.0.0.{i + 1}",
            port=5683,
            registration_id=f"r{i}",
            lifetime_s=86400,
            firmware=None,
            mpy=None,
            agent_version=None,
            links="",
        )
        await devices_q.replace_capabilities(pool, f"vb-{name}", [BLIND_CAP])
    return pool


@pytest.fixture
async def env(fleet, clock):
    await fleet.execute("update devices set unreachable = null")  # a timeout marks a board unreachable
    queue, link, hub = RecordingQueue(), FakeLink(), EventHub()
    jobs = JobService(fleet, queue, hub, clock=clock)
    runner = Runner(jobs, Registry(fleet, hub, link), link, command_timeout_s=5.0)
    return SimpleNamespace(pool=fleet, jobs=jobs, runner=runner, queue=queue, link=link, clock=clock)


def job(name: str, **kw) -> JobSpec:
    base = {
        "name": name,
        "target": {"device": "blind-1"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 5}},
        "trigger": {"type": "manual"},
    }
    return msgspec.convert(base | kw, JobSpec)


async def start(env, spec: JobSpec) -> uuid.UUID:
    """Save the job and run it now (as `POST /api/jobs/{name}/run` does); returns the planned run's id."""
    await env.jobs.save(spec)
    execution = await env.jobs.run_now(spec.name)
    return uuid.UUID(execution.id)


async def deliver(env, execution_id: uuid.UUID, attempt: int = 0) -> None:
    """What the Huey task does, then wait until the run has finished on the loop."""
    await env.runner.run(execution_id, attempt)
    await env.runner.drain(timeout=5)


async def rows(env, job_name: str):
    return await q.list_executions(env.pool, job=job_name, limit=100, upcoming=True)


async def test_a_run_succeeds_and_records_the_result(env):
    run_id = await start(env, job("down-ok"))
    env.link.answer("vb-blind-1", {"moved": 5.0, "position": 100})
    assert env.queue.when(run_id) == [env.clock()]  # handed over for now
    await deliver(env, run_id)
    (run,) = await rows(env, "down-ok")
    assert (run.state, run.result, run.error, run.attempt) == ("succeeded", {"moved": 5.0, "position": 100}, None, 1)
    assert run.finished_at is not None
    assert env.link.commands == [("vb-blind-1", "blind", "move", str(run_id), {"direction": "down", "seconds": 5})]


async def test_a_board_error_retries_with_backoff_then_fails(env):
    run_id = await start(env, job("down-retry", retry={"attempts": 3, "backoff_s": 10}))
    t0 = env.clock()
    env.link.answer("vb-blind-1", *[BoardError("blind: motor jammed")] * 3)

    await deliver(env, run_id, 0)
    (run,) = await rows(env, "down-retry")
    assert (run.state, run.attempt, run.error) == ("scheduled", 1, "blind: motor jammed")
    assert run.scheduled_for == t0 + timedelta(seconds=10)

    env.clock.advance(10)
    await deliver(env, run_id, 1)
    (run,) = await rows(env, "down-retry")
    assert (run.state, run.attempt, run.scheduled_for) == ("scheduled", 2, t0 + timedelta(seconds=30))

    env.clock.advance(20)
    await deliver(env, run_id, 2)
    (run,) = await rows(env, "down-retry")
    assert (run.state, run.attempt, run.error) == ("failed", 3, "blind: motor jammed")
    assert [(a, eta - t0) for eid, a, eta in env.queue.scheduled if eid == run_id] == [
        (0, timedelta(0)),
        (1, timedelta(seconds=10)),
        (2, timedelta(seconds=30)),
    ]
    assert len(env.link.commands) == 3


async def test_a_timeout_is_recorded_as_timed_out_and_plans_the_failure_follow_up(env):
    stop = {"action": {"capability": "blind", "command": "stop"}, "trigger": {"type": "delay", "seconds": 60}}
    run_id = await start(env, job("down-timeout", follow_ups=[stop | {"on": "failure"}, stop | {"on": "success"}]))
    env.link.answer("vb-blind-1", BoardTimeoutError("no answer from blind-1 within 10 s"))
    await deliver(env, run_id)
    run, follow_up = await rows(env, "down-timeout")
    assert (run.state, run.error) == ("timed_out", "no answer from blind-1 within 10 s")
    assert (follow_up.state, follow_up.command, follow_up.step, follow_up.device) == ("scheduled", "stop", 1, "blind-1")
    assert follow_up.scheduled_for == env.clock() + timedelta(seconds=60)
    assert env.queue.when(uuid.UUID(follow_up.id)) == [follow_up.scheduled_for]


async def test_follow_ups_are_planned_with_their_parameters_filled(env):
    up = {
        "action": {
            "capability": "blind",
            "command": "move",
            "params": {"direction": "up", "seconds": {"$result": "moved"}},
        },
        "trigger": {"type": "next", "time": "07:00", "tz": "Europe/Berlin"},
    }
    hot = up | {"when": {"path": "celsius", "above": 28}}
    run_id = await start(env, job("down-then-up", follow_ups=[up, hot]))
    env.link.answer("vb-blind-1", {"moved": 4.5})
    await deliver(env, run_id)
    run, follow_up, skipped = sorted(await rows(env, "down-then-up"), key=lambda e: e.step)
    assert run.state == "succeeded"
    assert (follow_up.state, follow_up.params) == ("scheduled", {"direction": "up", "seconds": 4.5})
    assert follow_up.parent_id == str(run_id) and follow_up.device == "blind-1"
    morning = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # 07:00 in Berlin, the morning after 20:00
    assert follow_up.scheduled_for == morning
    assert env.queue.when(uuid.UUID(follow_up.id)) == [morning]
    assert skipped.state == "skipped" and "condition not met" in skipped.error
    assert env.queue.when(uuid.UUID(skipped.id)) == []

    env.clock.at = morning
    await deliver(env, uuid.UUID(follow_up.id))
    assert env.link.commands[-1][4] == {"direction": "up", "seconds": 4.5}


async def test_a_role_of_three_devices_sends_its_commands_together_and_settles_the_parent(env):
    after = job("after-role", trigger={"type": "after", "job": "role-down", "on": "success"})
    run_id = await start(env, job("role-down", target={"role": "blind"}))
    await env.jobs.save(after)
    env.queue.scheduled.clear()
    gates = {f"vb-{name}": asyncio.Event() for name in BOARDS}
    env.link.gates.update(gates)  # the boards answer only when the test says so
    await env.runner.run(run_id, 0)

    async def sent(n):
        while len(env.link.commands) < n:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(sent(3), 5)
    # all three commands went out before any board answered: not one device after the other
    (parent,) = [e for e in await rows(env, "role-down") if e.parent_id is None]
    assert parent.state == "running" and parent.result == {"devices": list(BOARDS)}
    children = [e for e in await rows(env, "role-down") if e.parent_id == str(run_id)]
    assert sorted(c.device for c in children) == list(BOARDS)
    assert {c.state for c in children} == {"running"} and {c.attempt for c in children} == {1}
    assert sorted(eid for _, _, _, eid, _ in env.link.commands) == sorted(c.id for c in children)
    assert env.queue.scheduled == []  # started at once, not through the queue

    for name in BOARDS[:2]:
        gates[f"vb-{name}"].set()
    while len([c for c in await rows(env, "role-down") if c.state == "succeeded"]) < 2:
        await asyncio.sleep(0.005)
    assert (await q.get_execution(env.pool, run_id)).state == "running"  # one device still to come
    assert await rows(env, "after-role") == []
    gates["vb-blind-3"].set()
    await env.runner.drain(timeout=5)
    parent = await q.get_execution(env.pool, run_id)
    assert (parent.state, parent.error) == ("succeeded", None)
    (dependent,) = await rows(env, "after-role")
    assert dependent.state == "scheduled" and env.queue.when(uuid.UUID(dependent.id)) == [env.clock()]
    env.link.gates.clear()


async def test_a_role_run_with_one_failing_device_fails(env):
    await env.jobs.save(job("role-partly", target={"role": "blind"}))
    run_id = uuid.UUID((await env.jobs.run_now("role-partly")).id)
    env.link.answer("vb-blind-2", BoardError("blind: motor jammed"))
    await deliver(env, run_id)
    parent = await q.get_execution(env.pool, run_id)
    assert (parent.state, parent.error) == ("failed", "1 of 3 devices did not succeed")
    assert len(env.link.commands) == 3


async def test_a_finished_row_is_never_changed_again(env):
    run_id = await start(env, job("down-final", retry={"attempts": 2}))
    env.link.answer("vb-blind-1", {"moved": 5.0})
    await deliver(env, run_id)
    before = await q.get_execution(env.pool, run_id)
    assert before.state == "succeeded"

    await deliver(env, run_id, 0)  # Huey delivers the task again
    await deliver(env, run_id, 1)
    await env.jobs.recover()  # a restart
    assert not await q.finish(env.pool, run_id, "failed", error="late")
    assert not await q.reschedule(env.pool, run_id, env.clock(), "late")
    with pytest.raises(ConflictError):
        await env.jobs.cancel(run_id)
    assert await q.get_execution(env.pool, run_id) == before
    assert len(env.link.commands) == 1


async def test_a_run_started_too_late_is_missed(env):
    run_id = await start(env, job("down-late", misfire={"policy": "run_late", "grace_s": 600}))
    env.clock.advance(601)
    await deliver(env, run_id)
    (run,) = await rows(env, "down-late")
    assert run.state == "missed" and "misfire policy run_late, 600 s allowed" in run.error
    assert env.link.commands == []


async def test_an_interrupted_run_is_retried_or_failed_at_the_next_start(env):
    retried = await start(env, job("crash-retry", retry={"attempts": 2}))
    failed = await start(env, job("crash-fail", target={"device": "blind-2"}))
    for run_id in (retried, failed):
        assert await q.claim(env.pool, run_id, 0) is not None  # the master stops before the run goes on
    env.queue.scheduled.clear()
    await env.jobs.recover()
    retry = await q.get_execution(env.pool, retried)
    assert (retry.state, retry.scheduled_for) == ("scheduled", env.clock())
    assert retry.error.startswith("interrupted")
    assert (retried, 1, env.clock()) in env.queue.scheduled
    fail = await q.get_execution(env.pool, failed)
    assert (fail.state, fail.error) == ("failed", retry.error)


async def test_an_interrupted_device_of_a_role_run_settles_the_parent_at_the_next_start(env):
    crash_role = job("crash-role", target={"role": "blind"})
    await env.jobs.save(crash_role)
    run_id = uuid.UUID((await env.jobs.run_now("crash-role")).id)
    # the master stops right after the role's run was spread over its devices, before they all ran
    await env.jobs.planner.fan_out(await q.claim(env.pool, run_id, 0), crash_role)
    children = [e for e in await rows(env, "crash-role") if e.parent_id == str(run_id)]
    for child in children[:2]:
        await deliver(env, uuid.UUID(child.id))
    assert await q.claim(env.pool, uuid.UUID(children[2].id), 0) is not None  # then the master stops
    await env.jobs.recover()
    parent = await q.get_execution(env.pool, run_id)
    assert (parent.state, parent.error) == ("failed", "1 of 3 devices did not succeed")


async def test_a_run_its_board_began_before_a_reset_fails_at_once_and_is_not_retried(env):
    """The board answers that a reset cut this execution (agent/executions.py, "field": "eid"): it will not run it
    again, so a retry could only fail the same way; the run ends failed with the board's reason."""
    run_id = await start(env, job("down-cut", retry={"attempts": 3, "backoff_s": 10}))
    why = "board answered 4.12: interrupted: the board was reset (power cut or watchdog) while it ran this"
    env.link.answer("vb-blind-1", BoardError(why, field="eid"))
    await deliver(env, run_id)
    (run,) = await rows(env, "down-cut")
    assert (run.state, run.attempt, run.error) == ("failed", 1, why)
    assert env.queue.when(run_id) == [env.clock()]  # its first hand-over only: no retry planned
    assert len(env.link.commands) == 1


async def test_the_next_run_waits_while_a_timed_out_move_may_still_run_on_the_board(env):
    """A move's attempt timed out, but its last retransmission may have reached the board just before: the blind
    may move for the move's seconds after it. The device's next run is sent only after that, so it does not cut
    that move short (a `replace` job's run would)."""
    move = {"capability": "blind", "command": "move"}
    down = job("settle-down", action=move | {"params": {"direction": "down", "seconds": 0.5}})
    up = job("settle-up", action=move | {"params": {"direction": "up", "seconds": 0.5}})
    sent: list[float] = []
    env.link.answer(
        "vb-blind-1",
        BoardTimeoutError("no answer from the board within 5.5 s"),
        lambda p: sent.append(time.monotonic()) or {"moved": 0.5},
    )
    t0 = time.monotonic()
    await deliver(env, await start(env, down))
    await env.pool.execute("update devices set unreachable = null")  # the board is heard from again
    await deliver(env, await start(env, up))
    (first,), (second,) = await rows(env, "settle-down"), await rows(env, "settle-up")
    assert (first.state, second.state) == ("timed_out", "succeeded")
    assert sent[0] - t0 >= 0.5 + 1.0  # the timed-out move's seconds, and a second for its last datagram


async def test_the_next_run_waits_while_the_board_may_run_a_planned_run_itself(env, monkeypatch):
    """A run in its board's plan whose first attempt did not get through: once its grace has passed the board may run
    it itself (agent/plan.py), for its seconds, unknown to the master. The device's next run waits until then, so
    it does not cut that move short; once the board has answered a planned run, the next one goes at once."""
    import pifleet.jobs.runner as runner_module

    monkeypatch.setattr(runner_module, "AUTONOMY_SLACK_S", 0.2)
    move = {"capability": "blind", "command": "move"}
    down, up = ({"params": {"direction": d, "seconds": 0.5}} for d in ("down", "up"))
    later = {"type": "at", "at": (env.clock() + timedelta(hours=1)).isoformat()}
    planned = job("own-down", action=move | down, trigger=later, autonomy_grace_s=1, retry={"attempts": 3})
    person = job("person-up", action=move | up)
    sent: list[float] = []
    env.link.answer(
        "vb-blind-1",
        BoardError("CoAP exchange failed: the link dropped it"),
        lambda p: sent.append(time.monotonic()) or {"moved": 0.5},
        {"moved": 0.5},
        lambda p: sent.append(time.monotonic()) or {"moved": 0.5},
    )
    t0 = time.monotonic()
    await deliver(env, await start(env, planned))  # its first attempt fails: a retry is planned
    await deliver(env, await start(env, person))
    assert sent[0] - t0 >= 1 + 0.5 + 0.2  # its grace, its seconds, the board's slack

    env.clock.advance(60)
    t1 = time.monotonic()
    await deliver(env, await start(env, planned))  # this time the board answers it
    await deliver(env, await start(env, person))
    assert sent[1] - t1 < 1.0  # the board answered the planned run: nothing else can act on the device


async def test_after_a_start_the_next_run_waits_while_the_board_may_run_a_planned_run_not_sent_yet(env, monkeypatch):
    """The master was down at a planned run's instant: after its start, the alarm hands the runs due meanwhile over
    one by one, and the board may be running that one by itself already (its grace passed without the master). A
    run of the same device that goes out first waits until that move can have ended, so it does not cut it short
    (chaos.py, after a kill -9: two pulses 1.0 s apart counted for one run's retry, none for the next run of its
    board)."""
    import pifleet.jobs.runner as runner_module

    monkeypatch.setattr(runner_module, "AUTONOMY_SLACK_S", 0.2)
    move = {"capability": "blind", "command": "move"}
    down, up = ({"params": {"direction": d, "seconds": 0.5}} for d in ("down", "up"))
    later = {"type": "at", "at": (env.clock() + timedelta(hours=1)).isoformat()}
    planned = job("own-down-unsent", action=move | down, trigger=later, autonomy_grace_s=1)
    person = job("person-up-after-start", action=move | up)
    sent: list[float] = []
    env.link.answer(
        "vb-blind-1",
        lambda p: sent.append(time.monotonic()) or {"moved": 0.5},
        lambda p: sent.append(time.monotonic()) or {"moved": 0.5},
    )
    await env.jobs.save(planned)
    unsent = uuid.UUID((await env.jobs.run_now(planned.name)).id)  # due now, not handed over yet
    t0 = time.monotonic()
    await deliver(env, await start(env, person))
    assert sent[0] - t0 >= 1 + 0.5 + 0.2 - 0.05  # its grace, its seconds, the board's slack

    t1 = time.monotonic()
    await deliver(env, unsent)  # the planned run itself does not wait for itself
    assert sent[1] - t1 < 1.0
    assert [r.state for r in await rows(env, planned.name) if r.id == str(unsent)] == ["succeeded"]


class QueueAway(RecordingQueue):
    """Huey's schedule on a PostgreSQL that is restarting: the first `down` hand-overs fail as psycopg fails."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    async def schedule(self, execution_id: uuid.UUID, attempt: int, eta: datetime) -> None:
        if self.down:
            self.down -= 1
            import psycopg

            raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
        await super().schedule(execution_id, attempt, eta)


async def test_an_outcome_whose_hand_over_met_a_restarting_database_still_plans_its_follow_up(env, monkeypatch):
    """The outcome's transaction committed, then the database went before its follow-up reached the queue: the record
    is tried again, finds the run finished, and hands the follow-up over again (not only at the master's next start).
    """
    import pifleet.jobs.runner as runner_module

    monkeypatch.setattr(runner_module, "RECORD_BACKOFF_S", (0.01, 0.05))
    up = {"action": {"capability": "blind", "command": "stop"}, "trigger": {"type": "delay", "seconds": 60}}
    run_id = await start(env, job("down-away", follow_ups=[up]))
    env.jobs.planner.queue = env.runner.jobs.queue = away = QueueAway(down=2)
    env.link.answer("vb-blind-1", {"moved": 5.0})
    await deliver(env, run_id)
    run, follow_up = sorted(await rows(env, "down-away"), key=lambda e: e.step)
    assert run.state == "succeeded" and follow_up.state == "scheduled"
    assert away.when(uuid.UUID(follow_up.id)) == [follow_up.scheduled_for]


async def test_a_run_waiting_for_its_retry_that_the_board_did_by_itself_is_recorded_from_its_report(env):
    """The first attempt of a run in the board's plan did not get through; the board ran it itself after its grace
    and reports it (PUT /plan's answer) while the run waits for its next attempt: it is recorded as the board did it —
    succeeded, ran_by board, its follow-up planned — and the retry finds nothing to send."""
    from pifleet.events import EventHub
    from pifleet.jobs.autonomy import Autonomy

    move = {"capability": "blind", "command": "move"}
    later = {"type": "at", "at": (env.clock() + timedelta(hours=1)).isoformat()}
    up = {"action": move | {"params": {"direction": "up", "seconds": 0.5}}, "trigger": {"type": "delay", "seconds": 60}}
    planned = job(
        "own-report",
        action=move | {"params": {"direction": "down", "seconds": 0.5}},
        trigger=later,
        retry={"attempts": 3, "backoff_s": 30},
        follow_ups=[up],
    )
    run_id = await start(env, planned)
    env.link.answer("vb-blind-1", BoardError("CoAP exchange failed: the link dropped it"))
    await deliver(env, run_id)
    (run,) = [r for r in await rows(env, "own-report") if r.id == str(run_id)]
    assert (run.state, run.attempt) == ("scheduled", 1)  # waiting for its second attempt

    autonomy = Autonomy(env.jobs, env.link, EventHub(), clock=env.clock)
    answer = {"eid": str(run_id), "ok": True, "result": {"moved": 0.5}, "by": "board"}
    report = {"eid": str(run_id), "at": env.clock().timestamp(), "code": 68, "answer": answer}
    assert await autonomy.record("vb-blind-1", report)
    run, follow_up = sorted(
        (r for r in await rows(env, "own-report") if r.id == str(run_id) or r.step == 1), key=lambda r: r.step
    )
    assert (run.state, run.ran_by, run.result) == ("succeeded", "board", {"moved": 0.5})
    assert (follow_up.state, follow_up.step, follow_up.params["direction"]) == ("scheduled", 1, "up")
    await deliver(env, run_id, 1)  # its retry, as Huey would hand it over
    assert len(env.link.commands) == 1
