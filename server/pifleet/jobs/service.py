"""Jobs as a service: save (validated against the target's capabilities), plan runs, list what will happen.

Planning: every enabled job with a time trigger has exactly one future run of its own ("root" execution) in
job_executions; when that run starts, the next one is planned. What follows a finished run (follow-ups, jobs
triggered `after` it, retries, recovery) is the planner's to decide (jobs/planner.py). Each planned run is handed
to the Huey schedule (jobs/queue.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

import asyncpg
import msgspec

from ..devices.params import check_command
from ..errors import ConflictError, InvalidError, NotFoundError, PifleetError
from ..events import EventHub
from ..model import (
    AfterTrigger,
    DryRun,
    DrySend,
    ExecutionRead,
    JobRead,
    JobSpec,
    SunTrigger,
    ThresholdTrigger,
    TimelineEntry,
)
from ..storage import job_batches as batches
from ..storage import jobs as q
from . import results, targets, threshold, triggers
from . import timeline as timelines
from .planner import Clock, Planner, Scheduler, now

log = logging.getLogger(__name__)


class Queue(Scheduler, Protocol):
    """The durable queue (jobs/queue.py JobQueue), as the service uses it beside the planner."""

    async def schedule_many(self, runs: list[tuple[uuid.UUID, int, datetime]]) -> None: ...

    async def replace_all(self, runs: list[tuple[uuid.UUID, int, datetime]]) -> None: ...


MAX_REFUSALS = 100  # listed in one answer; the count says how many there were


class Refusal(NamedTuple):
    """Why one job of a list was refused: its place in the list, its name, the field (inside the job)."""

    index: int
    job: str | None  # None: the document has no (valid) name
    field: str | None
    detail: str


class JobsRefusedError(InvalidError):
    """A list of jobs refused as a whole (nothing saved): `field` is the first refusal's path in the list
    (`[3].action.params.seconds`), `job` its name; `refusals` lists each refused job (up to MAX_REFUSALS)."""

    def __init__(self, refusals: list[Refusal], total: int) -> None:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more refused)" if len(refusals) > 1 else ""
        who = f"job {first.job!r}" if first.job else "a job without a name"
        super().__init__(
            f"{who} ([{first.index}] of {total}): {first.field + ': ' if first.field else ''}"
            f"{first.detail}{more}; nothing was saved",
            field=_path(first),
        )
        self.refusals = refusals
        self.extra = {
            "job": first.job,
            "index": first.index,
            "refused": len(refusals),
            "refusals": [
                {"index": r.index, "job": r.job, "field": _path(r), "detail": r.detail} for r in refusals[:MAX_REFUSALS]
            ],
        }


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (synchronous code only: no other task runs meanwhile). Building tens of
    thousands of objects that refer to no cycle would otherwise start collections that walk every long-lived
    object of the master, several of them — most of the time a timeline takes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _path(refusal: Refusal) -> str:
    return f"[{refusal.index}].{refusal.field}" if refusal.field else f"[{refusal.index}]"


class JobService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: Queue,
        hub: EventHub,
        location: triggers.Location | None | Callable[[], triggers.Location | None] = None,
        *,
        clock: Clock = now,
    ) -> None:
        self.pool = pool
        self.queue = queue
        self.hub = hub
        self._location = location  # the master's settings give a callable: a person may move the house any time
        self.clock = clock
        self.planner = Planner(pool, queue, clock)
        # decoded specs by job id, with the updated_at they were saved at: the timeline reads 10,000 of them
        self._specs: dict[int, tuple[datetime, JobSpec]] = {}

    async def _active_specs(self) -> list[tuple[asyncpg.Record, JobSpec]]:
        """Enabled jobs not paused, with their specs: decoded once per version (what this master saved is known
        already; what another saved is read and decoded when first asked for)."""
        rows = await batches.active_jobs(self.pool)
        known = {row["id"] for row in rows if (c := self._specs.get(row["id"])) and c[0] == row["updated_at"]}
        if missing := [row["id"] for row in rows if row["id"] not in known]:
            decode = msgspec.json.Decoder(JobSpec).decode
            for r in await batches.spec_texts(self.pool, missing):
                self._specs[r["id"]] = (r["updated_at"], decode(r["spec"]))
        if len(self._specs) > 2 * len(rows) + 1000:  # jobs deleted or paused since: forget them
            active = {row["id"] for row in rows}
            self._specs = {k: v for k, v in self._specs.items() if k in active}
        return [(row, self._specs[row["id"]][1]) for row in rows if row["id"] in self._specs]

    @property
    def location(self) -> triggers.Location | None:
        """Where the house is, for sun triggers (the master's settings, as they are now)."""
        return self._location() if callable(self._location) else self._location

    async def replan_sun(self) -> int:
        """Plan afresh the own runs of every enabled job with a sun trigger: the master's location changed (or
        became known), so their next sunset is another instant. Returns how many jobs were planned again."""
        count = 0
        for job in await q.list_jobs(self.pool):
            if job.enabled and isinstance(job.spec.trigger, SunTrigger):
                await q.drop_pending_roots(self.pool, job.id)
                await self.plan_next(job.id, after=self.clock())
                count += 1
        if count:
            self.hub.publish("jobs")
        return count

    def next_fire(self, job: JobRead, after: datetime) -> datetime | None:
        return triggers.next_fire(job.spec.trigger, after, created=job.created_at, location=self.location)

    async def check(
        self,
        spec: JobSpec,
        check_members: bool = True,
        *,
        directory: targets.Directory | None = None,
        batch: dict[str, JobSpec] | None = None,
    ) -> None:
        """Refuse a job that could not run: unknown device, capability, command or parameter; bad trigger.

        check_members=False: the target's boards are not asked (a role's job, checked against the role's modules
        before its boards run them). `directory`: the devices, read once for many jobs; `batch`: jobs being saved
        with this one (an `after` trigger may follow one of them)."""
        directory = directory or targets.Directory(self.pool)
        triggers.validate(spec.trigger, self.location)
        if isinstance(spec.trigger, AfterTrigger):
            await self._check_after(spec, batch or {})
        if isinstance(spec.trigger, ThresholdTrigger):
            threshold.validate(spec.trigger)
            source = await directory.device(spec.trigger.device)
            if source is None:
                raise InvalidError(f"no device named {spec.trigger.device!r}", field="trigger.device")
            check_command(source, spec.trigger.capability, spec.trigger.command, {}, "trigger")
        members = await directory.resolve(spec.target) if check_members else []
        a = spec.action
        for device in members:
            check_command(device, a.capability, a.command, a.params, "action")
        for i, follow in enumerate(spec.follow_ups):
            triggers.validate_follow_up(follow.trigger, i)
            if follow.target is not None:
                if follow.target.fans_out:
                    raise InvalidError("a follow-up runs on one device or process", field=f"follow_ups[{i}].target")
                others = await directory.resolve(follow.target, f"follow_ups[{i}].target")
            else:
                others = members  # each device's follow-up runs on that device
            a = follow.action
            for other in others:
                check_command(
                    other,
                    a.capability,
                    a.command,
                    a.params,
                    f"follow_ups[{i}].action",
                    deferred=results.references(a.params),
                )
            if (
                follow.when is not None
                and follow.when.above is None
                and follow.when.below is None
                and follow.when.equals is msgspec.UNSET
            ):
                raise InvalidError("a condition needs above, below or equals", field=f"follow_ups[{i}].when")

    async def _check_after(self, spec: JobSpec, batch: dict[str, JobSpec]) -> None:
        """The job it follows must exist (saved, or saved with this one), and following must not lead back to this
        job (a cycle)."""
        chain, name = [spec.name], spec.trigger.job
        while True:
            if name in chain:
                raise InvalidError(
                    f"cycle: {' → '.join([*chain, name])} — a job cannot (indirectly) follow itself",
                    field="trigger.job",
                )
            other = batch.get(name)
            if other is None and (saved := await q.get_job(self.pool, name)) is not None:
                other = saved.spec
            if other is None:
                if len(chain) == 1:
                    raise InvalidError(f"no job named {name!r} to follow", field="trigger.job")
                return
            if not isinstance(other.trigger, AfterTrigger):
                return
            chain.append(name)
            name = other.trigger.job

    async def save(self, spec: JobSpec, check_members: bool = True) -> tuple[JobRead, bool]:
        await self.check(spec, check_members)
        job, created = await q.upsert_job(self.pool, spec)
        self._specs[job.id] = (job.updated_at, spec)
        if not created:
            await q.drop_pending_roots(self.pool, job.id)  # the trigger may have changed: plan afresh
        if spec.enabled:
            await self.plan_next(job.id, after=self.clock())
        self.hub.publish("jobs")
        return await q.get_job(self.pool, spec.name) or job, created

    async def apply(self, specs: list[JobSpec]) -> list[JobRead]:
        """Create or replace many jobs at once, all or nothing: every job is checked as `save` checks one (against
        the devices as they are now, read once), then all are written and their next runs planned in one
        transaction, and handed to the queue together. A refusal names each refused job, its place in the list
        and the field (JobsRefusedError); then nothing is saved."""
        directory = targets.Directory(self.pool)
        batch = {spec.name: spec for spec in specs}
        refusals: list[Refusal] = []
        first_at: dict[str, int] = {}
        for i, spec in enumerate(specs):
            if spec.name in first_at:
                refusals.append(Refusal(i, spec.name, "name", f"also given at [{first_at[spec.name]}]"))
                continue
            first_at[spec.name] = i
            try:
                await self.check(spec, directory=directory, batch=batch)
            except PifleetError as exc:
                refusals.append(Refusal(i, spec.name, exc.field, exc.detail))
        if refusals:
            raise JobsRefusedError(refusals, len(specs))
        at = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await batches.upsert_jobs(conn, specs)
            if replaced := [row["id"] for row in rows if not row["created"]]:
                await batches.drop_pending_roots(conn, replaced)
            runs, memo = [], {}
            for spec, row in zip(specs, rows, strict=True):
                when = (
                    triggers.next_fire(spec.trigger, at, created=row["created_at"], location=self.location, memo=memo)
                    if spec.enabled
                    else None
                )
                if when is None:
                    continue
                kind = spec.target.kind
                device = None if kind in ("role", "group") else await directory.device(getattr(spec.target, kind))
                runs.append(
                    batches.RootRun(
                        job_id=row["id"],
                        device_id=device.id if device else None,
                        capability=spec.action.capability,
                        command=spec.action.command,
                        params=spec.action.params,
                        at=when,
                        max_attempts=spec.retry.attempts,
                    )
                )
            planned = await batches.insert_roots(conn, runs)
        await self.queue.schedule_many([(r["id"], r["attempt"], r["scheduled_for"]) for r in planned])
        log.info("applied %d jobs (%d created), %d runs planned", len(specs), len(specs) - len(replaced), len(planned))
        self.hub.publish("jobs")
        self.hub.publish("executions")
        for spec, row in zip(specs, rows, strict=True):
            self._specs[row["id"]] = (row["updated_at"], spec)
        next_run = {run.job_id: run.at for run in runs}
        return [
            JobRead(
                id=row["id"],
                name=row["name"],
                enabled=row["enabled"],
                paused=row["paused"],
                spec=spec,
                next_run=next_run.get(row["id"]),
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            for spec, row in zip(specs, rows, strict=True)
        ]

    async def delete(self, name: str) -> None:
        if not await q.delete_job(self.pool, name):
            raise NotFoundError(f"no job named {name!r}", field="name")
        self.hub.publish("jobs")

    async def get(self, name: str) -> JobRead:
        job = await q.get_job(self.pool, name)
        if job is None:
            raise NotFoundError(f"no job named {name!r}", field="name")
        return job

    async def plan_next(self, job_id: int, after: datetime) -> uuid.UUID | None:
        """Plan the job's next own run after `after`, unless one is already planned or it never fires again."""
        job = await q.get_job_by_id(self.pool, job_id)
        if job is None or not job.enabled or await q.has_pending_root(self.pool, job_id):
            return None
        when = self.next_fire(job, after)
        if when is None:
            return None
        return await self._plan(job, when)

    async def plan_now(self, job: JobRead) -> uuid.UUID | None:
        return await self._plan(job, self.clock())

    async def run_now(self, name: str) -> ExecutionRead:
        job = await self.get(name)
        await self.check(job.spec)
        execution_id = await self._plan(job, self.clock())
        assert execution_id is not None
        execution = await q.get_execution(self.pool, execution_id)
        assert execution is not None
        return execution

    async def _plan(self, job: JobRead, when: datetime) -> uuid.UUID | None:
        execution_id = await self.planner.insert_root(self.pool, job, when)
        if execution_id is not None:
            await self.queue.schedule(execution_id, 0, when)
            log.info("planned %s of job %s for %s", execution_id, job.name, when.isoformat())
            self.hub.publish("executions")
        return execution_id

    async def recover(self) -> None:
        """After a start: let the planner decide about runs a crash interrupted, rebuild the queue's Huey schedule
        from every planned run (a second delivery finds nothing to claim), plan jobs that lack a next run."""
        await self.planner.recover()
        rows = await q.scheduled(self.pool, limit=10_000_000)
        await self.queue.replace_all([(row["id"], row["attempt"], row["scheduled_for"]) for row in rows])
        for job_id in await q.enabled_job_ids(self.pool):
            await self.plan_next(job_id, after=self.clock())

    async def set_paused(self, name: str, paused: bool) -> JobRead:
        if not await q.set_paused(self.pool, name, paused):
            raise NotFoundError(f"no job named {name!r}", field="name")
        self.hub.publish("jobs")
        return await self.get(name)

    async def cancel(self, execution_id: uuid.UUID) -> ExecutionRead:
        execution = await q.get_execution(self.pool, execution_id)
        if execution is None:
            raise NotFoundError(f"no execution {execution_id}", field="execution_id")
        if not await q.cancel(self.pool, execution_id):
            raise ConflictError(
                f"execution {execution_id} is {execution.state}; only scheduled runs can be cancelled",
                field="execution_id",
            )
        self.hub.publish("executions")
        return await q.get_execution(self.pool, execution_id) or execution

    async def dry_run(self, name: str) -> DryRun:
        """Validate the job against its devices as they are now and show what a run would send; send nothing."""
        job = await self.get(name)
        return await self.preview(job.spec, job.created_at)

    async def preview(self, spec: JobSpec, created: datetime | None = None) -> DryRun:
        """A dry run of a job document, saved or not (the dashboard's editor shows it before saving): checked as
        `save` checks it, what a run would send now, and its next five runs."""
        await self.check(spec)
        job = JobRead(
            id=0,
            name=spec.name,
            enabled=spec.enabled,
            paused=False,
            spec=spec,
            next_run=None,
            created_at=created or self.clock(),
            updated_at=created or self.clock(),
        )
        action = spec.action
        sends = []
        for device in await targets.resolve(self.pool, spec.target):
            host = f"[{device.address}]" if device.address and ":" in device.address else device.address
            sends.append(
                DrySend(
                    device=device.name,
                    online=device.online,
                    uri=f"coap://{host}:{device.port}/a/{action.capability}/{action.command}",
                    payload={"eid": "<execution id>", "ep": device.id, "params": action.params},
                )
            )
        runs, after = [], self.clock()
        for _ in range(5):
            when = self.next_fire(job, after)
            if when is None:
                break
            runs.append(when)
            after = when
        return DryRun(job=spec.name, target=str(spec.target), sends=sends, next_runs=runs)

    async def timeline(self, days: float, device: str | None = None, limit_per_job: int = 500) -> list[TimelineEntry]:
        """Everything expected to run within `days`: planned runs, and projected occurrences of each job's
        trigger with the follow-ups they would bring (assuming the run succeeds)."""
        start = self.clock()
        end = start + timedelta(days=days)
        # two connections: the planned runs and the jobs are read at the same time
        rows, active = await asyncio.gather(batches.planned_runs(self.pool, end, device), self._active_specs())
        directory, members = targets.Directory(self.pool), {}
        for _, spec in active:  # the devices of role and group jobs, read before the entries are built
            target = spec.target
            if not (target.device or target.process) and (target.role, target.group) not in members:
                try:
                    names = [d.name for d in await directory.resolve(target)]
                except PifleetError:  # a group deleted since: nothing to show
                    names = []
                members[target.role, target.group] = names
        with _gc_paused():  # 70,000 new objects and no cycle among them: no collection passes meanwhile
            return timelines.entries(start, end, rows, active, members, device, limit_per_job, self.location)

    async def upcoming(self, limit: int = 50) -> list[ExecutionRead]:
        return await q.list_executions(self.pool, state="scheduled", limit=limit, upcoming=True)

    # -- reads (API and dashboard) -------------------------------------------------------------------------------

    async def list(self) -> list[JobRead]:
        """All jobs with their next run."""
        return await q.list_jobs(self.pool)

    async def executions(
        self,
        *,
        job: str | None = None,
        device: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ExecutionRead]:
        """Executions, newest first."""
        return await q.list_executions(self.pool, job=job, device=device, state=state, limit=limit, offset=offset)

    async def execution(self, execution_id: uuid.UUID) -> ExecutionRead:
        execution = await q.get_execution(self.pool, execution_id)
        if execution is None:
            raise NotFoundError(f"no execution {execution_id}", field="execution_id")
        return execution
