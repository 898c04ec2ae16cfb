"""Running one execution: claim it, check it, send the command to the board, record the outcome, and plan what
follows (the job's next run, follow-ups, or a retry). Called by the Huey task on the master's event loop.

Exactly once: `claim` moves a run from scheduled to running in one UPDATE, so a second delivery of the same Huey
task does nothing; the command carries the execution id, so a board that already ran it does not run it again.

The Huey worker waits only for the claim; the run then goes on as a task of the event loop, so a 5-second blind
move does not hold a worker thread. One run per device at a time is kept by a lock per device (the `queue`
concurrency policy waits for it, `refuse` skips when it is taken, `replace` ignores it).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ..errors import BoardError, BoardTimeoutError, BoardUnreachableError, PifleetError
from ..fleet.link import BoardLink
from ..fleet.params import check_command
from ..fleet.registry import Registry
from ..model import FollowUp, JobSpec
from ..storage import devices as devices_q
from ..storage import jobs as q
from . import results, targets, triggers
from .service import OUTCOME, JobService, now

log = logging.getLogger(__name__)


ON_TIME_S = 5.0  # the scheduler wakes every second; "on time" leaves room for that and a busy queue


def interrupted_error() -> str:
    return "interrupted: the master stopped while this run was in progress"


def misfire_reason(row, spec: JobSpec, started: datetime) -> str | None:
    """Why a run that starts now is `missed` under the job's misfire policy, or None to run it."""
    late = (started - row["scheduled_for"]).total_seconds()
    allowed = ON_TIME_S if spec.misfire.policy == "skip" else max(spec.misfire.grace_s, ON_TIME_S)
    if late <= allowed:
        return None
    return (
        f"missed: due {row['scheduled_for'].isoformat(timespec='seconds')}, could start only "
        f"{late:.0f} s later (misfire policy {spec.misfire.policy}, {allowed:g} s allowed)"
    )


class Runner:
    def __init__(self, jobs: JobService, registry: Registry, link: BoardLink, command_timeout_s: float) -> None:
        self.jobs = jobs
        self.pool = jobs.pool
        self.registry = registry
        self.link = link
        self.command_timeout_s = command_timeout_s
        self._device_locks: dict[str, asyncio.Lock] = {}
        self._running: set[asyncio.Task] = set()

    async def run(self, execution_id: uuid.UUID, attempt: int) -> None:
        """Claim the run and hand it to the event loop; returns once it is claimed (or found already taken)."""
        row = await q.claim(self.pool, execution_id, attempt)
        if row is None:
            log.debug(
                "execution %s attempt %d: nothing to claim (already run, cancelled or retried)", execution_id, attempt
            )
            return
        self.jobs.hub.publish("executions")
        task = asyncio.get_running_loop().create_task(self._guarded(row), name=f"execution-{execution_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _guarded(self, row) -> None:
        try:
            job = await q.get_job_by_id(self.pool, row["job_id"])
            if job is not None:
                await self._run(row, job)
        except Exception:  # never leave the loop with an exception nobody awaits
            log.exception("execution %s crashed", row["id"])
        finally:
            self.jobs.hub.publish("executions")

    async def drain(self, timeout: float) -> None:
        """Let runs in progress finish (an orderly stop); what does not finish is recovered at the next start."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)

    async def _run(self, row, job) -> None:
        spec = job.spec
        if row["parent_id"] is None and row["attempt"] == 1:
            # plan the job's next own run now, so a long or failing run never stops the schedule
            await self.jobs.plan_next(job.id, after=row["scheduled_for"])
        if reason := misfire_reason(row, spec, now()):
            log.warning("execution %s of %s %s", row["id"], job.name, reason)
            return await self._complete(row, spec, "missed", error=reason)
        if job.paused:
            return await self._complete(row, spec, "skipped", error="skipped: the job is paused")
        if row["parent_id"] is None and spec.target.fans_out:
            return await self._fan_out(row, spec)
        lock = self._device_locks.setdefault(row["device_id"], asyncio.Lock()) if row["device_id"] else None
        if lock is None or spec.concurrency == "replace":
            return await self._attempt(row, job)
        if spec.concurrency == "refuse" and lock.locked():
            return await self._complete(row, spec, "skipped", error="skipped: another run on the device was running")
        async with lock:  # queue (and refuse, when free): one run per device at a time, in arrival order
            await self._attempt(row, job)

    async def _attempt(self, row, job) -> None:
        spec = job.spec
        await q.mark_running(self.pool, row["id"])
        self.jobs.hub.publish("executions")
        try:
            result = await self._send(row, spec)
        except BoardTimeoutError as exc:
            await self._failed(row, spec, exc.detail, final_state="timed_out")
        except PifleetError as exc:
            await self._failed(row, spec, exc.detail)
        except Exception as exc:  # a bug must not leave the run "running" forever
            log.exception("execution %s crashed", row["id"])
            await self._failed(row, spec, f"internal error: {exc}")
        else:
            await self._complete(row, spec, "succeeded", result=result)
            log.info(
                "execution %s (%s %s.%s) succeeded: %s", row["id"], job.name, row["capability"], row["command"], result
            )

    async def _send(self, row, spec: JobSpec) -> dict[str, Any]:
        device = await devices_q.get_by_id(self.pool, row["device_id"]) if row["device_id"] else None
        if device is None:
            raise PifleetError("the target device no longer exists")
        # checked again before it runs: the board may have changed its capabilities since the job was saved
        check_command(device, row["capability"], row["command"], row["params"], "action")
        if not device.online:
            reason = device.unreachable or f"no registration update since {device.last_seen or 'never'}"
            raise BoardError(f"board {device.name} is offline ({reason})")
        timeout = (spec.timeout_s or self.command_timeout_s) + float(row["params"].get("seconds", 0) or 0)
        try:
            return await self.link.command(
                device.id,
                device.address,
                device.port,
                row["capability"],
                row["command"],
                str(row["id"]),
                row["params"],
                timeout,
            )
        except BoardUnreachableError as exc:
            await self.registry.mark_unreachable(device.id, exc.detail)  # the next run fails fast
            raise

    async def _failed(self, row, spec: JobSpec, error: str, final_state: str = "failed") -> None:
        attempts_made = row["attempt"]
        if attempts_made < row["max_attempts"]:
            delay = spec.retry.backoff_s * (2 ** (attempts_made - 1))
            when = now() + timedelta(seconds=delay)
            await q.reschedule(self.pool, row["id"], when, error)
            await self.jobs.queue.schedule(row["id"], attempts_made, when)
            log.info(
                "execution %s attempt %d/%d failed (%s); retrying at %s",
                row["id"],
                attempts_made,
                row["max_attempts"],
                error,
                when.isoformat(),
            )
            return
        await self._complete(row, spec, final_state, error=error)
        log.warning("execution %s failed after %d attempt(s): %s", row["id"], attempts_made, error)

    async def _fan_out(self, row, spec: JobSpec) -> None:
        """A role or group run: one step-0 execution per device it means now; this row stays running until they
        have all finished (`_settle_parent`)."""
        try:
            members = await targets.resolve(self.pool, spec.target)
        except PifleetError as exc:
            return await self._complete(row, spec, "failed", error=exc.detail)
        if not members:
            return await self._complete(row, spec, "skipped", error=f"skipped: no device in {spec.target}")
        when, planned = now(), []
        async with self.pool.acquire() as conn, conn.transaction():
            for device in members:
                execution_id = await q.insert_execution(
                    conn,
                    job_id=row["job_id"],
                    device_id=device.id,
                    capability=row["capability"],
                    command=row["command"],
                    params=row["params"],
                    scheduled_for=when,
                    max_attempts=row["max_attempts"],
                    parent_id=row["id"],
                    step=0,
                )
                if execution_id is not None:
                    planned.append(execution_id)
            await q.set_result(conn, row["id"], {"devices": [d.name for d in members]})
            await q.mark_running(conn, row["id"])
        for execution_id in planned:
            await self.jobs.queue.schedule(execution_id, 0, when)
        log.info("execution %s fans out to %s", row["id"], ", ".join(d.name for d in members))

    async def _complete(self, row, spec: JobSpec, state: str, *, result: Any = None, error: str | None = None):
        """Record the outcome and plan what it calls for — follow-ups (their parameters filled from the result,
        their conditions checked) and jobs triggered `after` this one — in one transaction: a crash in between
        cannot leave a finished run whose successors were never planned. Huey hears of them after the commit
        (and again from JobService.recover after a crash)."""
        # skipped, missed and cancelled runs did not run: nothing follows them
        outcome = OUTCOME.get(state)
        own_run = row["step"] == 0 and row["device_id"] is not None  # the job's action on one device
        planned = []
        async with self.pool.acquire() as conn, conn.transaction():
            if row["parent_id"] is not None and row["step"] == 0:
                # devices of one role/group run finishing together settle it one after the other: the parent's
                # row lock first, before this run's own row (else two finishing runs deadlock on each other)
                await q.lock_execution(conn, row["parent_id"])
            await q.finish(conn, row["id"], state, result=result, error=error)
            if outcome is not None and own_run:  # follow-ups hang off the job's own runs (no chains yet)
                for step, follow in enumerate(spec.follow_ups, start=1):
                    if follow.on in (outcome, "always"):
                        planned += await self._plan_follow_up(conn, row, spec, step, follow, result)
            if row["parent_id"] is None:
                planned += await self.jobs.after_run(conn, row, outcome)
            elif row["step"] == 0:
                planned += await self.jobs.settle_fan_out(conn, row["parent_id"])
        for execution_id, when in planned:
            await self.jobs.queue.schedule(execution_id, 0, when)
            log.info("planned %s after %s, for %s", execution_id, row["id"], when.isoformat())

    async def _plan_follow_up(self, conn, row, spec: JobSpec, step: int, follow: FollowUp, result: Any):
        # by default a follow-up runs on the device its run ran on (for a role or group: each device's own)
        device_id = row["device_id"]
        if follow.target is not None:
            device = await devices_q.get_by_name(conn, follow.target.name)
            device_id = device.id if device else None
        when = triggers.follow_up_time(follow.trigger, now())
        state, error, params = "scheduled", None, follow.action.params
        if follow.when is not None:
            ok, why = results.holds(follow.when, result)
            if not ok:
                state, error = "skipped", f"skipped: condition not met: {why}"
        if state == "scheduled":
            try:
                params = results.substitute(params, result)
            except PifleetError as exc:
                state, error = "failed", f"cannot fill parameter {exc.field}: {exc.detail}"
        execution_id = await q.insert_execution(
            conn,
            job_id=row["job_id"],
            device_id=device_id,
            capability=follow.action.capability,
            command=follow.action.command,
            params=msgspec.to_builtins(params),
            scheduled_for=when,
            max_attempts=spec.retry.attempts,
            parent_id=row["id"],
            step=step,
            state=state,
            error=error,
        )
        return [(execution_id, when)] if execution_id is not None and state == "scheduled" else []
