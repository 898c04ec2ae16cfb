"""What follows a run's outcome — decided here and nowhere else: follow-ups (condition, parameters filled from the
result, target, time), jobs triggered `after` it, a role/group run's devices and its settlement, retries with
backoff, and what becomes of runs a stopped master interrupted.

Two halves. The decisions are pure functions of rows, specs, an outcome and an instant; they return NamedTuples
and do no I/O. `Planner` is the thin layer that reads what they need and writes what they decide through
storage/jobs.py, in one transaction per outcome (finish + follow-ups + dependents + the parent's settlement; the
parent's row lock first), and hands the planned runs to Huey after the commit. A finished row is final: the
storage updates refuse to touch one, and nothing is planned after a refused finish.

The clock is injected (`clock`, a `now`-like callable), so tests decide what time it is. Services and the runner
call this module; it imports neither (runner.py and service.py both import it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import asyncpg
import msgspec
import psycopg

from ..errors import PifleetError
from ..model import FINAL_STATES, DeviceRead, JobRead, JobSpec
from ..storage import devices as devices_q
from ..storage import jobs as q
from . import results, targets, triggers

log = logging.getLogger(__name__)

__all__ = ["FINAL_STATES", "OUTCOME", "Planner", "database_down", "interrupted_error", "now"]

Clock = Callable[[], datetime]

# what a finished run's state means for follow-ups and `after` triggers (skipped/missed/cancelled: nothing)
OUTCOME = {"succeeded": "success", "failed": "failure", "timed_out": "failure"}


def now() -> datetime:
    return datetime.now(UTC)


def database_down(exc: BaseException) -> bool:
    """A connection to PostgreSQL lost or refused (a restart, a network blip), by asyncpg or by Huey's psycopg: worth
    trying again. A statement PostgreSQL refused is not."""
    return isinstance(
        exc,
        (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,  # class 08, and asyncpg's "connection was closed in the middle"
            asyncpg.exceptions.OperatorInterventionError,  # 57P01 terminating (a fast shutdown), 57P03 starting up
            asyncpg.InterfaceError,  # "connection is closed"
            psycopg.OperationalError,
            psycopg.InterfaceError,
        ),
    )


def interrupted_error() -> str:
    return "interrupted: the master stopped while this run was in progress"


class Scheduler(Protocol):
    """What the planner needs of the durable queue (jobs/queue.py JobQueue)."""

    async def schedule(self, execution_id: uuid.UUID, attempt: int, eta: datetime) -> None: ...


# ---- decisions (pure) ----------------------------------------------------------------------------------------


class Planned(NamedTuple):
    """A run written as scheduled; Huey hears of it after the commit."""

    execution_id: uuid.UUID
    when: datetime


class FollowUpRun(NamedTuple):
    """One follow-up of a finished run, as it is to be recorded: `scheduled`, or `skipped`/`failed` with why."""

    step: int
    device: str | None  # a device or process by name; None: the device the run ran on
    capability: str
    command: str
    params: dict[str, Any]
    when: datetime
    state: str
    error: str | None


class Settlement(NamedTuple):
    """How a role/group run ends once all its devices have."""

    state: str
    error: str | None


class Recovery(NamedTuple):
    """What becomes of a run found dispatched/running at a start: `settle` (a role/group run: its devices decide),
    `retry` at `when`, or `fail`."""

    action: str
    when: datetime | None
    error: str | None


class MemberRun(NamedTuple):
    device_id: str
    when: datetime


class FanOut(NamedTuple):
    """A role/group run either spreads over its devices (`runs`, the parent keeps `result`) or ends (`state`)."""

    runs: list[MemberRun]
    result: dict[str, Any] | None
    state: str | None
    error: str | None


def outcome(state: str) -> str | None:
    """`success`/`failure` for a run that ran; None for one that did not (skipped, missed, cancelled)."""
    return OUTCOME.get(state)


def retry_at(attempt: int, max_attempts: int, backoff_s: float, at: datetime) -> datetime | None:
    """When a failed attempt (1-based) runs again — backoff doubling each time — or None: it was the last."""
    if attempt >= max_attempts:
        return None
    return at + timedelta(seconds=backoff_s * (2 ** (attempt - 1)))


def follow_ups(spec: JobSpec, state: str, result: Any, finished: datetime) -> list[FollowUpRun]:
    """The follow-ups a run of the job's own action (on one device) calls for, by its final state."""
    happened = outcome(state)
    if happened is None:
        return []
    runs = []
    for step, follow in enumerate(spec.follow_ups, start=1):
        if follow.on not in (happened, "always"):
            continue
        when = triggers.follow_up_time(follow.trigger, finished)
        run_state, error, params = "scheduled", None, follow.action.params
        if follow.when is not None:
            ok, why = results.holds(follow.when, result)
            if not ok:
                run_state, error = "skipped", f"skipped: condition not met: {why}"
        if run_state == "scheduled":
            try:
                params = results.substitute(params, result)
            except PifleetError as exc:
                run_state, error = "failed", f"cannot fill parameter {exc.field}: {exc.detail}"
        runs.append(
            FollowUpRun(
                step=step,
                device=follow.target.name if follow.target is not None else None,
                capability=follow.action.capability,
                command=follow.action.command,
                params=msgspec.to_builtins(params),
                when=when,
                state=run_state,
                error=error,
            )
        )
    return runs


def dependents(jobs: Iterable[JobRead], happened: str | None) -> list[JobRead]:
    """Of the jobs triggered `after` a job, those its run's outcome starts."""
    if happened is None:
        return []
    return [job for job in jobs if job.spec.enabled and job.spec.trigger.on in (happened, "always")]


def settlement(states: list[str]) -> Settlement | None:
    """A role/group run ends when every device's run has: succeeded if all succeeded, else failed; None while
    one is still to come."""
    if not states or any(s not in FINAL_STATES for s in states):
        return None
    failed = sum(s != "succeeded" for s in states)
    if failed:
        return Settlement("failed", f"{failed} of {len(states)} devices did not succeed")
    return Settlement("succeeded", None)


def fan_out(target: str, members: list[DeviceRead], at: datetime) -> FanOut:
    """A role/group run: one run per device it means now, all at once; with none, the run is skipped."""
    if not members:
        return FanOut([], None, "skipped", f"skipped: no device in {target}")
    return FanOut([MemberRun(d.id, at) for d in members], {"devices": [d.name for d in members]}, None, None)


def recovery(row, at: datetime) -> Recovery:
    """An interrupted run: a role/group run is settled by its devices; a device's run is retried at once if its
    policy allows another attempt, else it failed (its effect is unknown, so nothing but its parent follows)."""
    if row["device_id"] is None and row["parent_id"] is None:
        return Recovery("settle", None, None)
    if row["attempt"] < row["max_attempts"]:
        return Recovery("retry", at, interrupted_error())
    return Recovery("fail", None, interrupted_error())


# ---- the thin layer that writes them -------------------------------------------------------------------------


class Planner:
    def __init__(self, pool, queue: Scheduler, clock: Clock = now) -> None:
        self.pool = pool
        self.queue = queue
        self.clock = clock

    async def complete(
        self, row, spec: JobSpec | None, state: str, *, result: Any = None, error: str | None = None
    ) -> bool:
        """Record a run's outcome and plan what it calls for, in one transaction: a crash in between cannot leave
        a finished run whose successors were never planned. Huey hears of them after the commit (and again from
        recover() after a crash). False when the run had finished already (then nothing changes). `spec` None: a
        command sent at once (jobs/commands.py), which calls for nothing but the settlement of its role/group
        command."""
        async with self.pool.acquire() as conn, conn.transaction():
            if row["parent_id"] is not None and row["step"] == 0:
                # devices of one role/group run finishing together settle it one after the other: the parent's
                # row lock first, before this run's own row (else two finishing runs deadlock on each other)
                await q.lock_execution(conn, row["parent_id"])
            if not await q.finish(conn, row["id"], state, result=result, error=error):
                return False
            planned = await self._after_finish(conn, row, spec, state, result)
        await self.hand_over(planned, after=row["id"])
        return True

    async def _after_finish(self, conn, row, spec: JobSpec | None, state: str, result: Any) -> list[Planned]:
        planned: list[Planned] = []
        # follow-ups hang off the job's own runs (no chains); a command has none
        if spec is not None and row["step"] == 0 and row["device_id"] is not None:
            for run in follow_ups(spec, state, result, self.clock()):
                planned += await self._write_follow_up(conn, row, spec, run)
        if row["parent_id"] is None:
            planned += await self._dependents(conn, row["job_id"], outcome(state))
        elif row["step"] == 0:
            planned += await self._settle(conn, row["parent_id"])
        return planned

    async def failed(self, row, spec: JobSpec, error: str, final_state: str = "failed") -> datetime | None:
        """An attempt failed: plan the next one (returns when), or record the run's final failure."""
        when = retry_at(row["attempt"], row["max_attempts"], spec.retry.backoff_s, self.clock())
        if when is not None and await q.reschedule(self.pool, row["id"], when, error):
            await self.queue.schedule(row["id"], row["attempt"], when)
            log.info(
                "execution %s attempt %d/%d failed (%s); retrying at %s",
                row["id"],
                row["attempt"],
                row["max_attempts"],
                error,
                when.isoformat(),
            )
            return when
        if await self.complete(row, spec, final_state, error=error):
            log.warning("execution %s failed after %d attempt(s): %s", row["id"], row["attempt"], error)
        return None

    async def fan_out(self, row, spec: JobSpec) -> list[tuple[uuid.UUID, DeviceRead]]:
        """A role or group run: one step-0 run per device it means now, written as scheduled; this row stays
        running until they have all finished (then the last one settles it). Returns the runs with their devices:
        the runner starts them together at once (runner.py), so they are not handed to the queue — a crash before
        they start leaves them scheduled, and the next start hands them over with every other planned run."""
        try:
            members = await targets.resolve(self.pool, spec.target)
        except PifleetError as exc:
            await self.complete(row, spec, "failed", error=exc.detail)
            return []
        decision = fan_out(str(spec.target), members, self.clock())
        if decision.state is not None:
            await self.complete(row, spec, decision.state, error=decision.error)
            return []
        by_id = {d.id: d for d in members}
        started: list[tuple[uuid.UUID, DeviceRead]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for run in decision.runs:
                execution_id = await q.insert_execution(
                    conn,
                    job_id=row["job_id"],
                    device_id=run.device_id,
                    capability=row["capability"],
                    command=row["command"],
                    params=row["params"],
                    scheduled_for=run.when,
                    max_attempts=row["max_attempts"],
                    parent_id=row["id"],
                    step=0,
                )
                if execution_id is not None:
                    started.append((execution_id, by_id[run.device_id]))
            await q.set_result(conn, row["id"], decision.result)
            await q.mark_running(conn, row["id"])
        log.info("execution %s fans out to %s", row["id"], ", ".join(decision.result["devices"]))
        return started

    async def recover(self) -> None:
        """Runs a stopped master left dispatched or running: retried, failed (settling their role/group run), or
        settled by their devices."""
        for row in await q.interrupted(self.pool):
            decision = recovery(row, self.clock())
            planned: list[Planned] = []
            if decision.action == "retry":
                await q.reschedule(self.pool, row["id"], decision.when, decision.error)
                continue  # handed to Huey with every other scheduled run (JobService.recover)
            async with self.pool.acquire() as conn, conn.transaction():
                if decision.action == "settle":
                    planned = await self._settle(conn, row["id"])
                else:
                    if row["parent_id"] is not None and row["step"] == 0:
                        await q.lock_execution(conn, row["parent_id"])
                    if await q.finish(conn, row["id"], "failed", error=decision.error) and row["step"] == 0:
                        if row["parent_id"] is not None:
                            planned = await self._settle(conn, row["parent_id"])
            await self.hand_over(planned, after=row["id"])

    async def insert_root(self, db, job: JobRead, when: datetime) -> uuid.UUID | None:
        """Write the job's own run at `when` (not yet handed to Huey); None if that run exists already. A role or
        group run is one execution; it fans out into one per device when it runs."""
        spec = job.spec
        device = None if spec.target.fans_out else await devices_q.get_by_name(db, spec.target.name)
        return await q.insert_execution(
            db,
            job_id=job.id,
            device_id=device.id if device else None,
            capability=spec.action.capability,
            command=spec.action.command,
            params=spec.action.params,
            scheduled_for=when,
            max_attempts=spec.retry.attempts,
        )

    async def hand_over_again(self, row) -> None:
        """The run (if it was rescheduled) and the runs planned after it that are scheduled, to the queue again: for
        an outcome whose first tries to be recorded failed, one of which may have committed before its connection
        went. A run handed over twice is claimed once."""
        for again in await q.planned_by(self.pool, row["id"]):
            await self.queue.schedule(again["id"], again["attempt"], again["scheduled_for"])

    async def hand_over(self, planned: list[Planned], after: uuid.UUID | None = None) -> None:
        for execution_id, when in planned:
            await self.queue.schedule(execution_id, 0, when)
            log.info("planned %s after %s, for %s", execution_id, after, when.isoformat())

    async def _write_follow_up(self, conn, row, spec: JobSpec, run: FollowUpRun) -> list[Planned]:
        # by default a follow-up runs on the device its run ran on (for a role or group: each device's own)
        device_id = row["device_id"]
        if run.device is not None:
            device = await devices_q.get_by_name(conn, run.device)
            device_id = device.id if device else None
        execution_id = await q.insert_execution(
            conn,
            job_id=row["job_id"],
            device_id=device_id,
            capability=run.capability,
            command=run.command,
            params=run.params,
            scheduled_for=run.when,
            max_attempts=spec.retry.attempts,
            parent_id=row["id"],
            step=run.step,
            state=run.state,
            error=run.error,
        )
        return [Planned(execution_id, run.when)] if execution_id is not None and run.state == "scheduled" else []

    async def _dependents(self, conn, job_id: int | None, happened: str | None) -> list[Planned]:
        """Plan, now, the runs of jobs triggered `after` this job's outcome (inside the caller's transaction)."""
        if happened is None or job_id is None:  # no job: a command sent at once
            return []
        job = await q.get_job_by_id(conn, job_id)
        if job is None:
            return []
        planned, when = [], self.clock()
        for other in dependents(await q.jobs_after(conn, job.name), happened):
            execution_id = await self.insert_root(conn, other, when)
            if execution_id is not None:
                planned.append(Planned(execution_id, when))
        return planned

    async def _settle(self, conn, parent_id: uuid.UUID) -> list[Planned]:
        """When the last device of a role/group run has finished, finish the run itself and plan what comes
        `after` it."""
        await q.lock_execution(conn, parent_id)  # one settlement at a time (a finishing device took it already)
        decision = settlement(await q.child_states(conn, parent_id))
        if decision is None:
            return []
        parent = await q.finish_running(conn, parent_id, decision.state, error=decision.error)
        return await self._dependents(conn, parent["job_id"], outcome(decision.state)) if parent else []
