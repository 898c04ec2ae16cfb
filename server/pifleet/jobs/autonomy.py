"""The boards' own timed runs while the master is away (docs/jobs.md, "When the master is away").

Layer: service (jobs). Each board gets the plan of its own time-triggered runs for the next 48 hours — at, cron,
every and sun triggers, their instants computed here — as a short list: execution id, due time, grace, the end of
its misfire window, capability, command, params (PUT /plan). Its runs' ids are the ids the master gives those runs
when it plans them (storage.jobs.root_id), so a run the board did and the run the master planned are one execution.
The plan goes out after each registration (and the first heartbeat a master hears from a board after its own
start), when jobs change, and daily. Its answer lists the runs the board did by itself; each is recorded here as
its execution's outcome (`ran_by: board`), through the planner like any run (follow-ups, the job's next run), and
acknowledged in the next PUT. Never twice: a recorded run is finished in SQL (the master will not send it), the
board answers a run it did as a duplicate (it does not act again), and it does not run one the master sent.

Master-only (never in a plan): role and group targets, threshold and after triggers, jobs with a follow-up that
takes the run's result or has a `when` condition, and jobs with `autonomy_grace_s: null`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ..devices.link import BoardLink
from ..errors import PifleetError
from ..events import EventHub
from ..model import AtTrigger, CronTrigger, EveryTrigger, JobRead, SunTrigger
from ..storage import autonomy as q
from ..storage import devices as devices_q
from ..storage.jobs import root_id
from .results import references
from .service import JobService

log = logging.getLogger(__name__)

HORIZON = timedelta(hours=48)
PLAN_BYTES = 1000  # the plan fits one datagram with OSCORE and the options: the soonest runs that fit
_TIMED = (AtTrigger, CronTrigger, EveryTrigger, SunTrigger)
_SKIP_WINDOW_S = 5.0  # misfire "skip": on time means within 5 s (docs/jobs.md)
_ROUNDS = 16  # PUT /plan rounds per push: each answer reports up to 4 runs the board did


def autonomous(job: JobRead, device_name: str) -> bool:
    """Whether this job's own runs on `device_name` may be run by the board itself."""
    spec = job.spec
    if not job.enabled or job.paused or spec.autonomy_grace_s is None:
        return False
    if spec.target.kind != "device" or spec.target.device != device_name:
        return False
    if not isinstance(spec.trigger, _TIMED):
        return False
    return not any(f.when is not None or references(f.action.params) for f in spec.follow_ups)


def _unix(at: datetime) -> float:
    return at.timestamp()


class Autonomy:
    def __init__(
        self, jobs: JobService, link: BoardLink, hub: EventHub, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.jobs = jobs
        self.pool = jobs.pool
        self.link = link
        self.hub = hub
        self.clock = clock or (lambda: datetime.now(UTC))
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None

    # -- when ---------------------------------------------------------------------------------------------

    def soon(self, device_id: str) -> None:
        """Push the plan to this board in the background (after its registration, its first heartbeat)."""
        task = asyncio.get_running_loop().create_task(self.push(device_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def described(self, device_id: str, described: dict[str, Any]) -> None:
        """The registry read what a board runs after its registration: its plan follows."""
        self.soon(device_id)

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        """Jobs changed (a second later, so a batch of saves is one push): every online board's plan anew; and
        daily."""
        with self.hub.subscribe() as sub:
            last = time.monotonic()
            while True:
                notice = await sub.next(3600)
                if notice is not None:
                    if notice[0] != "jobs":
                        continue
                    await asyncio.sleep(1)
                    while await sub.next(0.01) is not None:
                        pass
                elif time.monotonic() - last < 86400:
                    continue
                last = time.monotonic()
                try:
                    online = await devices_q.online_map(self.pool)
                except Exception:  # noqa: BLE001 — the database may be restarting: the next change or day tries again
                    log.exception("plans: could not list the boards")
                    continue
                for device_id, up in online.items():
                    if up:
                        self.soon(device_id)

    # -- what ---------------------------------------------------------------------------------------------

    async def plan_for(self, device_name: str, now: datetime) -> list[list[Any]]:
        """The board's runs in the next 48 h, soonest first, as PUT /plan takes them (all of them; push() sends the
        soonest that fit one datagram)."""
        jobs = [j for j in await self.jobs.list() if autonomous(j, device_name)]
        if not jobs:
            return []
        planned: dict[int, dict[datetime, uuid.UUID]] = {}
        for row in await q.scheduled_roots(self.pool, [j.id for j in jobs]):
            planned.setdefault(row["job_id"], {})[row["scheduled_for"]] = row["id"]
        end = now + HORIZON
        entries: list[list[Any]] = []
        for job in jobs:
            spec = job.spec
            times = sorted(t for t in planned.get(job.id, {}) if now - timedelta(seconds=spec.autonomy_grace_s) < t)
            at = times[-1] if times else now
            while len(times) < 64:
                at = self.jobs.next_fire(job, at)
                if at is None or at > end:
                    break
                times.append(at)
            for due in times:
                if due > end:
                    continue
                window = spec.misfire.grace_s if spec.misfire.policy == "run_late" else _SKIP_WINDOW_S
                eid = planned.get(job.id, {}).get(due) or root_id(job.id, due)
                entries.append(
                    [
                        str(eid),
                        math.ceil(_unix(due)),  # whole seconds: a board's floats are single precision
                        spec.autonomy_grace_s,
                        math.floor(_unix(due) + window),
                        spec.action.capability,
                        spec.action.command,
                        spec.action.params,
                    ]
                )
        entries.sort(key=lambda e: e[1])
        return entries

    # -- push and reconcile -------------------------------------------------------------------------------

    async def push(self, device_id: str) -> bool:
        """The board's plan, and its own runs recorded; True once the board has the plan as it is now (never raises:
        a board that is away gets it next time)."""
        lock = self._locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            try:
                return await self._push(device_id)
            except PifleetError as exc:
                log.info("plan for %s not delivered: %s", device_id, exc, extra={"device": device_id})
            except Exception:  # noqa: BLE001 — a plan must never take the master down
                log.exception("plan for %s failed", device_id, extra={"device": device_id})
            return False

    async def _push(self, device_id: str) -> bool:
        device = await devices_q.get_by_id(self.pool, device_id)
        if device is None or device.address is None or device.port is None or device.kind != "pifleet.esp32":
            return False
        ack: list[str] = []
        for _ in range(_ROUNDS):
            now = self.clock()
            entries = await self.plan_for(device.name, now)
            # the time as whole seconds and µs (a float of 1.7e9 s is 128 s apart on a board, see agent/boots.py)
            seconds, us = divmod(round(now.timestamp() * 1_000_000), 1_000_000)
            body: dict[str, Any] = {"time": seconds, "us": us, "plan": [], "ack": ack}
            for entry in entries:
                body["plan"].append(entry)
                if len(msgspec.json.encode(body)) > PLAN_BYTES:
                    body["plan"].pop()
                    break
            answer = await self.link.put_plan(device.address, device.port, body)
            done = answer.get("done") or []
            if ack or done:
                log.info(
                    "plan for %s: %d runs; %d runs it did by itself reported",
                    device.name,
                    len(body["plan"]),
                    len(done),
                    extra={"device": device_id},
                )
            ack = []
            for run in done:
                if await self.record(device_id, run):
                    ack.append(run["eid"])
            if not done or not ack:
                break
        return True  # each round delivered the plan as it was then

    async def record(self, device_id: str, run: dict[str, Any]) -> bool:
        """A run the board did by itself, as it reported it ({"eid", "at", "code", "answer"}): recorded as its
        execution's outcome, ran_by board. True when the master has it now (the board may forget it)."""
        try:
            eid = uuid.UUID(run["eid"])
            at = datetime.fromtimestamp(float(run["at"]), UTC)
        except (KeyError, ValueError, TypeError):
            log.warning("board %s reported an unreadable run: %r", device_id, run, extra={"device": device_id})
            return True  # nothing to record: the board may forget it
        row = await q.execution_row(self.pool, eid)
        if row is None:
            row = await self._plan_missing(device_id, eid, at)
            if row is None:
                log.warning("board %s ran %s, a run no job plans", device_id, eid, extra={"device": device_id})
                return True
        job = await self._job(row["job_id"])
        await q.mark_ran_by_board(self.pool, eid, at)
        answer = run.get("answer") if isinstance(run.get("answer"), dict) else {}
        ok = run.get("code") == 68 and answer.get("ok", True)  # 68: 2.04 Changed
        spec = job.spec if job is not None else None
        if ok:
            finished = await self.jobs.planner.complete(row, spec, "succeeded", result=answer.get("result"))
        else:
            error = f"the board ran it by itself: {answer.get('error') or 'it failed'}"
            finished = await self.jobs.planner.complete(row, spec, "failed", error=error)
        if finished:
            log.info(
                "execution %s (%s.%s) ran on board %s by itself at %s: %s",
                eid,
                row["capability"],
                row["command"],
                device_id,
                at.isoformat(),
                "succeeded" if ok else "failed",
                extra={"device": device_id},
            )
        if job is not None and row["parent_id"] is None:
            await self.jobs.plan_next(job.id, row["scheduled_for"])
        self.hub.publish("executions")
        return True

    async def _job(self, job_id: int | None) -> JobRead | None:
        if job_id is None:
            return None
        for job in await self.jobs.list():
            if job.id == job_id:
                return job
        return None

    async def _plan_missing(self, device_id: str, eid: uuid.UUID, at: datetime):
        """The board ran a run of its plan the master never planned (it was away for more than one run of the job):
        find which (its id names job and instant) and plan it now, to record its outcome."""
        device = await devices_q.get_by_id(self.pool, device_id)
        if device is None:
            return None
        for job in await self.jobs.list():
            if job.spec.target.kind != "device" or job.spec.target.device != device.name:
                continue
            due = at - HORIZON
            for _ in range(1000):
                due = self.jobs.next_fire(job, due)
                if due is None or due > at:
                    break
                if root_id(job.id, due) == eid:
                    async with self.pool.acquire() as conn:
                        await self.jobs.planner.insert_root(conn, job, due)
                    return await q.execution_row(self.pool, eid)
        return None
