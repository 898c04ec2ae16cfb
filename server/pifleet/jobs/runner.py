"""Running one execution: claim it, check it, send the command to the board, and hand the outcome to the planner
(jobs/planner.py), which alone decides what follows it (follow-ups, dependents, a retry, the settlement of a
role/group run). Called by the Huey task on the master's event loop.

Exactly once: `claim` moves a run from scheduled to running in one UPDATE, so a second delivery of the same Huey
task does nothing; the command carries the execution id, so a board that already ran it does not run it again.

The Huey worker waits only for the claim; the run then goes on as a task of the event loop, so a 5-second blind
move does not hold a worker thread. One run per device at a time is kept by a lock per device, a database lock
shared by every master on the database (sites/locks.py; the `queue` concurrency policy waits for it, `refuse`
skips when it is taken, `replace` ignores it). A command may act on a board beyond what the master saw: one that
timed out may have reached it at the last moment (SETTLE_S), and a planned run whose first attempt did not get through
may be run by the board itself after its grace (AUTONOMY_SLACK_S): the device's next run waits until neither can act
any more, so it does not cut that move short.

A role or group run's commands carry one instant to act at ("due", Unix ms by the master's clock), a short lead
after the first of them leaves (Lead: room for the commands to leave and be read on the boards, from the send
spreads measured): each board waits for it by its own clock, so their pins move together however long each took
to read its command; a board that got it late acts at once and says so in its result ("due": ms late, negative).
A device's own run carries no instant: it acts when its command arrives.

Several sites (sites/): a master claims only runs of its own site's boards, and runs without a device. A role or
group run fans out per site: the devices of this site start together here; the runs of another site's devices
are handed to that site's queue (and its alarm), and that site's master runs them.

An outcome is recorded until the database takes it: a connection lost or refused while it is written (PostgreSQL
restarting) is retried with capped backoff for RECORD_FOR_S, so the run does not stay `running` until the master's
next start. A board that answers that it began this run before a reset (agent/once.py: "field": "eid") will not
run it again: that run fails at once, with the board's reason, and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..devices.link import BoardLink
from ..devices.params import check_command
from ..devices.registry import Registry
from ..errors import BoardError, BoardTimeoutError, BoardUnreachableError, PifleetError
from ..metrics import Metrics
from ..model import DeviceRead, JobSpec
from ..sites.locks import LocalLocks
from ..storage import autonomy as autonomy_q
from ..storage import devices as devices_q
from ..storage import job_batches as batches
from ..storage import jobs as q
from .autonomy import autonomous
from .planner import database_down
from .service import JobService

log = logging.getLogger(__name__)


ON_TIME_S = 5.0  # the scheduler wakes every second; "on time" leaves room for that and a busy queue
RECORD_FOR_S = 600.0  # how long an outcome is offered to a database that is away (a restart takes seconds)
RECORD_BACKOFF_S = (0.5, 5.0)  # first wait between tries, and its cap
SETTLE_S = 1.0  # after a timed-out command's own `seconds`: its last datagram on the way, the board reading it
# after a planned run's grace and `seconds`: the board's look at its plan, its 2 s try to reach the master, its start
AUTONOMY_SLACK_S = 5.0
# a role/group run's lead (ms from its first command to the instant its boards act): at least the time a board
# takes to read a command (OSCORE, JSON, its eid file: ~10 ms of a board's CPU, more on a busy Wi-Fi), plus twice
# the send spreads seen lately; never more than LEAD_MAX_MS (a person pressing a button waits for it)
LEAD_BASE_MS = 200
LEAD_MAX_MS = 1000


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
    def __init__(
        self,
        jobs: JobService,
        registry: Registry,
        link: BoardLink,
        command_timeout_s: float,
        metrics: Metrics | None = None,
        locks: LocalLocks | None = None,
        replan: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.jobs = jobs
        self.metrics = metrics or Metrics()
        self.pool = jobs.pool
        self.planner = jobs.planner
        self.registry = registry
        self.link = link
        self.command_timeout_s = command_timeout_s
        self.locks = locks or LocalLocks()  # the master's: DeviceLocks, shared with the other masters
        self.lead = Lead()  # how far ahead a role/group run's instant is
        # a board's plan pushed anew (jobs/autonomy.py, Autonomy.push): True once the board has it
        self.replan = replan
        self._running: set[asyncio.Task] = set()
        # device -> {execution id: until when that command may still act on the board unknown to us (monotonic)}
        self._acting: dict[str, dict[str, float]] = {}

    async def run(self, execution_id: uuid.UUID, attempt: int) -> None:
        """Claim the run and hand it to the event loop; returns once it is claimed (or found already taken)."""
        row = await q.claim(self.pool, execution_id, attempt)
        if row is None:
            log.debug(
                "execution %s attempt %d: nothing to claim (already run, cancelled or retried)",
                execution_id,
                attempt,
                extra={"execution": str(execution_id)},
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
            log.exception("execution %s crashed", row["id"], extra=_fields(row))
        finally:
            self.jobs.hub.publish("executions")

    async def drain(self, timeout: float) -> None:
        """Let runs in progress finish (an orderly stop); what does not finish is recovered at the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._running and (left := deadline - loop.time()) > 0:  # a role's run starts its devices' runs
            await asyncio.wait(set(self._running), timeout=left)

    async def _run(self, row, job) -> None:
        spec = job.spec
        if row["parent_id"] is None and row["attempt"] == 1:
            # plan the job's next own run now, so a long or failing run never stops the schedule
            await self.jobs.plan_next(job.id, after=row["scheduled_for"])
        started = self.planner.clock()
        self.metrics.fire_error.observe((started - row["scheduled_for"]).total_seconds())
        if reason := misfire_reason(row, spec, started):
            log.warning("execution %s of %s %s", row["id"], job.name, reason, extra=_fields(row, job))
            return await self._ended(row, spec, "missed", error=reason)
        if job.paused:
            return await self._ended(row, spec, "skipped", error="skipped: the job is paused")
        if row["parent_id"] is None and spec.target.fans_out:
            return await self._fan_out(row, job)
        if not await self._await_board(row, job):
            return  # the board ran it by itself, and said so (jobs/autonomy.py)
        self._board_may_run(row, job)  # before the device's lock: a run waiting for it past its grace, too
        device_id = row["device_id"]
        if device_id is None or spec.concurrency == "replace":
            return await self._attempt(row, job)
        # queue (and refuse, when free): one run per device at a time, in arrival order
        if not await self.locks.acquire(device_id, wait=spec.concurrency != "refuse"):
            await self._ended(row, spec, "skipped", error="skipped: another run on the device was running")
            return await self._withdrawn(row)
        try:
            await self._attempt(row, job)
        finally:
            await self.locks.release(device_id)

    async def _await_board(self, row, job) -> bool:
        """A run its board may have carried out by itself (jobs/autonomy.py: the master starts it only after the
        board's grace, and the board is offline): wait, until the run's misfire window ends, for the board to be heard
        again (it then reports what it did). False when the run finished meanwhile (the board did it); True to send
        it. A run started on time, or a retry, goes out at once: the board runs nothing before its grace."""
        spec = job.spec
        if row["parent_id"] is not None or row["attempt"] > 1 or not autonomous(job, spec.target.device or ""):
            return True
        if self.planner.clock() < row["scheduled_for"] + timedelta(seconds=spec.autonomy_grace_s or 0):
            return True
        window = spec.misfire.grace_s if spec.misfire.policy == "run_late" else 5.0
        end = row["scheduled_for"] + timedelta(seconds=window)
        said = False
        while self.planner.clock() < end:
            device = await devices_q.get_by_id(self.pool, row["device_id"])
            if device is None or device.online:
                break
            if not said:
                log.info(
                    "execution %s of %s waits for board %s (offline): it may have run it by itself",
                    row["id"],
                    job.name,
                    device.name,
                    extra=_fields(row, job),
                )
                said = True
            await asyncio.sleep(1)
            if not await autonomy_q.live(self.pool, row["id"]):
                return False
        return True

    async def _fan_out(self, row, job) -> None:
        """A role or group run: the planner writes one run per device; they are claimed in one statement, marked
        running in one more, and their commands go out one right after the other, so the blinds of a role move
        in step. A device busy with another run waits for it (or is skipped) by the job's concurrency rule, on
        its own; each device's run goes on and ends as any run does (retries, follow-ups, the settlement)."""
        spec = job.spec
        members = dict(await self.planner.fan_out(row, spec))
        if not members:
            return
        claimed = await batches.claim_many(self.pool, list(members))  # this site's devices only
        self.jobs.hub.publish("executions")
        mine = {child["id"] for child in claimed}
        if others := [execution_id for execution_id in members if execution_id not in mine]:
            # another site's devices: their runs go to that site's queue and alarm, to start there now
            at = self.planner.clock()
            await self.jobs.queue.schedule_many([(execution_id, 0, at) for execution_id in others])
        if spec.concurrency == "replace":
            ready, busy = [(child, False) for child in claimed], []
        else:
            free = await self.locks.acquire_free([child["device_id"] for child in claimed])
            ready = [(child, True) for child in claimed if child["device_id"] in free]
            busy = [child for child in claimed if child["device_id"] not in free]
        try:
            await batches.mark_running(self.pool, [child["id"] for child, _ in ready])
        except BaseException:
            for child, locked in ready:
                if locked:
                    await self.locks.release(child["device_id"])
            raise
        due = self.instant()  # the instant every board of this run acts at
        spread = SendSpread(row, job, len(ready), due, self.lead)
        for child, locked in ready:
            device = members[child["id"]]
            self._spawn(self._member(child, job, device, locked, spread), child)
        for child in busy:
            self._spawn(self._run(child, job), child)

    async def _member(self, row, job, device, locked: bool, spread: SendSpread) -> None:
        try:
            await self._attempt(row, job, device=device, spread=spread, due=spread.due)
        finally:
            spread.note(row["id"], None)  # not sent at all (refused, offline): the spread is told so
            if locked:
                await self.locks.release(row["device_id"])

    def _spawn(self, coro, row) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:  # never leave the loop with an exception nobody awaits
                log.exception("execution %s crashed", row["id"], extra=_fields(row))
            finally:
                self.jobs.hub.publish("executions")

        task = asyncio.get_running_loop().create_task(guarded(), name=f"execution-{row['id']}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _attempt(
        self,
        row,
        job,
        *,
        device: DeviceRead | None = None,
        spread: SendSpread | None = None,
        due: int | None = None,
    ) -> None:
        """One attempt: the command to the board, its outcome to the planner. With `device` (a role/group run's
        member, marked running with the others and its device read with them) it goes out at once, to act at
        `due`."""
        spec = job.spec
        if device is None:
            await q.mark_running(self.pool, row["id"])
            self.jobs.hub.publish("executions")
            await self._unsent_planned(row)
        await self._settled(row, spec)
        try:
            result = await self._send(row, spec, device, spread, due)
        except BoardTimeoutError as exc:
            # it may have reached the board at the last moment: it may act for its seconds from now
            self._may_act(row, time.monotonic() + _seconds(row) + SETTLE_S)
            await self._failed(row, spec, exc.detail, "timed_out")
        except PifleetError as exc:
            if exc.field == "eid":  # the board began it before a reset and will not run it again (agent/once.py)
                self._acted(row)
                await self._ended(row, spec, "failed", error=exc.detail)
            else:
                await self._failed(row, spec, exc.detail, "failed")
        except Exception as exc:  # a bug must not leave the run "running" forever
            log.exception("execution %s crashed", row["id"], extra=_fields(row, job))
            await self._failed(row, spec, f"internal error: {exc}", "failed")
        else:
            self._acted(row)
            if due is not None and isinstance(late := result.get("due"), int | float) and late < 0:
                self.lead.late(-late)
                log.info(
                    "execution %s of %s: the board acted at once, %d ms after the run's instant (it came late)",
                    row["id"],
                    job.name,
                    -late,
                    extra=_fields(row, job),
                )
            await self._ended(row, spec, "succeeded", result=result)
            log.info(
                "execution %s (%s %s.%s) succeeded: %s",
                row["id"],
                job.name,
                row["capability"],
                row["command"],
                result,
                extra=_fields(row, job),
            )

    async def _settled(self, row, spec: JobSpec) -> None:
        """Wait until no other command can still act on the device unknown to the master, so this one does not cut
        it short (a blind's new move replaces the one under way):
        - a command that timed out: a retransmission over a lossy link may reach the board just before the master
          gives up, and a move then runs its `seconds` (chaos.py: a down move's attempt timed out 1.7 s into its
          2.7 s, the next run's up move replaced it, and the retry was answered `succeeded` for the cut move);
        - a board's planned run whose first attempt did not get through: the board may run it itself once its grace
          has passed (agent/plan.py, when the master does not answer it within 2 s — over a lossy link, while the
          master is up; chaos.py: the next run's move replaced such a move 2.9 s into its 4.2 s).
        Not the run's own earlier attempts (the board answers the same eid without acting again), and not for
        `replace`, whose run is meant to cut the one under way."""
        if not row["device_id"] or spec.concurrency == "replace":
            return
        said = False
        while True:  # looked at again every half second: the board may answer, or take a fresh plan, meanwhile
            acting = self._acting.get(row["device_id"], {})
            now = time.monotonic()
            for eid in [eid for eid, until in acting.items() if until <= now]:
                del acting[eid]
            others = [until for eid, until in acting.items() if eid != str(row["id"])]
            if not others:
                return
            if not said:
                log.info(
                    "execution %s waits up to %.1f s: another command may still be acting on the device",
                    row["id"],
                    max(others) - now,
                    extra=_fields(row),
                )
                said = True
            await asyncio.sleep(min(0.5, max(others) - now))

    async def _unsent_planned(self, row) -> None:
        """The device's planned runs that are due and that no master has sent yet count as acting, as they would once
        started here (_board_may_run): after this master's start its alarm hands the runs due while it was down over
        one by one, while the board may be running one of them by itself (chaos.py, after a kill -9: two pulses 1.0 s
        apart counted for one run's retry, none for the next run of its board). A role or group member's command
        does not look: it acts at its instant."""
        if not row["device_id"]:
            return
        for other in await autonomy_q.unsent_roots(self.pool, row["device_id"], self.planner.clock()):
            if other["id"] == row["id"] or str(other["id"]) in self._acting.get(row["device_id"], {}):
                continue
            job = await q.get_job_by_id(self.pool, other["job_id"])
            if job is not None:
                self._board_may_run(dict(other, attempt=1), job)

    def _may_act(self, row, until: float) -> None:
        """`row`'s command may act on its device until `until` (monotonic) without the master knowing."""
        if row["device_id"]:
            acting = self._acting.setdefault(row["device_id"], {})
            acting[str(row["id"])] = max(until, acting.get(str(row["id"]), 0.0))

    def _acted(self, row) -> None:
        """The board answered for `row`: it acts no more, and will not run it by itself (it knows its eid)."""
        if row["device_id"]:
            self._acting.get(row["device_id"], {}).pop(str(row["id"]), None)

    async def _withdrawn(self, row) -> None:
        """A run of the board's plan that the master ended without sending it (skipped): once the board has a fresh
        plan without it, it will not run it by itself, and the device's next runs need not wait out its grace (a
        `queue` run behind a `refuse` run that was skipped waited 35 s). A plan that does not get through keeps them
        waiting: the board may still run it."""
        if row["device_id"] and self.replan is not None and await self.replan(str(row["device_id"])):
            self._acted(row)

    def _board_may_run(self, row, job) -> None:
        """The first attempt of a run in its board's plan (jobs/autonomy.py): until the board has answered, it may
        run it itself after its grace, for its seconds — also while the run waits for the device's lock (runs ahead
        of it took long over a lossy link), so the runs queued behind it wait for that too."""
        spec = job.spec
        if row["parent_id"] is not None or row["attempt"] != 1 or not autonomous(job, spec.target.device or ""):
            return
        grace = (spec.autonomy_grace_s or 0) + _seconds(row) + AUTONOMY_SLACK_S
        ends = row["scheduled_for"] + timedelta(seconds=grace)
        self._may_act(row, time.monotonic() + (ends - self.planner.clock()).total_seconds())

    async def _ended(self, row, spec: JobSpec | None, state: str, **outcome: Any) -> None:
        """The planner records the outcome (and plans what follows); counted if it was this call that ended it."""
        if await self._recorded(row, lambda: self.planner.complete(row, spec, state, **outcome)):
            self.metrics.executions.labels(state).inc()

    async def _failed(self, row, spec: JobSpec, error: str, final_state: str) -> None:
        """An attempt failed: the planner retries it (not counted yet) or records the run's final failure."""
        if await self._recorded(row, lambda: self.planner.failed(row, spec, error, final_state=final_state)) is None:
            self.metrics.executions.labels(final_state).inc()

    async def _recorded(self, row, write: Callable[[], Awaitable[Any]]) -> Any:
        """`write` (one outcome's transaction, and handing what it planned to the queue) again until the database
        takes it, for RECORD_FOR_S. A try that failed may have committed before its connection went (the answer to
        COMMIT lost, or the queue unreachable after it): once a try went through, the run itself (if it was
        rescheduled) and the runs planned after it are handed to the queue again, until that goes through too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_FOR_S
        delay, cap = RECORD_BACKOFF_S
        tries, done, written = 0, None, False
        while True:
            try:
                if not written:
                    done, written = await write(), True
                if tries:
                    await self.planner.hand_over_again(row)
                    log.info(
                        "execution %s: outcome recorded after %d failed tries", row["id"], tries, extra=_fields(row)
                    )
                return done
            except Exception as exc:
                if not database_down(exc) or loop.time() + delay > deadline:
                    raise
                tries += 1
                log.warning(
                    "execution %s: its outcome could not be recorded (%s: %s); trying again in %.1f s",
                    row["id"],
                    type(exc).__name__,
                    exc,
                    delay,
                    extra=_fields(row),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, cap)

    def instant(self) -> int:
        """The instant (Unix ms) for the boards of a role/group run whose commands go out now (see Lead)."""
        return round(time.time() * 1000) + self.lead.ms()

    def start_command(self, row, timeout_s: float | None, due: int | None = None) -> asyncio.Task:
        """`command` as a task of the event loop, held like a job's run (an orderly stop lets it finish)."""
        task = asyncio.get_running_loop().create_task(self.command(row, timeout_s, due), name=f"command-{row['id']}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def command(self, row, timeout_s: float | None, due: int | None = None) -> PifleetError | None:
        """Run a command a person or script sent (jobs/commands.py has recorded it as running): sent at once (a
        role's or group's with the instant `due`, like a role job's), and recorded through the planner like a job's
        run; returns why it failed, or None when it succeeded.

        It does not wait for the device's lock: the board orders its own commands (a new move or a stop cancels
        the running one), and a person's stop must not queue behind a scheduled 30-second move."""
        error: PifleetError | None = None
        try:
            lead_s = self.lead.ms() / 1000 if due is not None else 0
            result = await self.send(row, self.timeout(row, timeout_s) + lead_s, due=due)
        except BoardTimeoutError as exc:
            error, state, outcome = exc, "timed_out", {"error": exc.detail}
        except PifleetError as exc:
            error, state, outcome = exc, "failed", {"error": exc.detail}
        except Exception as exc:  # a bug must not leave the command "running" forever
            log.exception("command %s crashed", row["id"], extra=_fields(row))
            error = PifleetError(f"internal error: {exc}")
            state, outcome = "failed", {"error": error.detail}
        else:
            state, outcome = "succeeded", {"result": result}
        await self._ended(row, None, state, **outcome)
        self.jobs.hub.publish("executions")
        log.info(
            "command %s (%s.%s by %s %s) %s: %s",
            row["id"],
            row["capability"],
            row["command"],
            row["source"],
            row["actor"],
            state,
            outcome.get("result", outcome.get("error")),
            extra=_fields(row),
        )
        return error

    def timeout(self, row, timeout_s: float | None) -> float:
        """How long to wait for the board's answer: the given timeout, else the master's, plus the command's own
        `seconds` (a 5-second move answers after 5 seconds)."""
        return (timeout_s or self.command_timeout_s) + _seconds(row)

    async def _send(
        self,
        row,
        spec: JobSpec,
        device: DeviceRead | None = None,
        spread: SendSpread | None = None,
        due: int | None = None,
    ) -> dict[str, Any]:
        timeout = self.timeout(row, spec.timeout_s) + (self.lead.ms() / 1000 if due is not None else 0)
        return await self.send(row, timeout, device, spread, due)

    async def send(
        self,
        row,
        timeout: float,
        device: DeviceRead | None = None,
        spread: SendSpread | None = None,
        due: int | None = None,
    ) -> dict[str, Any]:
        """Check the run's command against its board as it is now (`device`: read just now by the caller) and
        send it, carrying the execution's id (and a role/group run's instant, `due`)."""
        if device is None and row["device_id"]:
            device = await devices_q.get_by_id(self.pool, row["device_id"])
        if device is None:
            raise PifleetError("the target device no longer exists")
        # checked again before it runs: the board may have changed its capabilities since the job was saved
        check_command(device, row["capability"], row["command"], row["params"], "action")
        if not device.online:
            reason = device.unreachable or f"no registration update since {device.last_seen or 'never'}"
            raise BoardError(f"board {device.name} is offline ({reason})")
        sent = time.monotonic()
        if spread is not None:
            spread.note(row["id"], sent)
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
                due=due,
            )
        except BoardUnreachableError as exc:
            # the next run fails fast, unless the board was heard from since this one went out (it restarted)
            await self.registry.mark_unreachable(device.id, exc.detail, device.last_seen)
            raise
        finally:
            self.metrics.command_duration.labels(row["capability"], row["command"]).observe(time.monotonic() - sent)


class Lead:
    """How far ahead of its first command a role/group run's instant lies: LEAD_BASE_MS for the boards to read
    their commands, plus twice the largest send spread of the last runs (it decays by half a run), plus what a board
    that still came late reported (halved at every run); at most LEAD_MAX_MS."""

    def __init__(self) -> None:
        self.spread_ms = 0.0
        self.late_ms = 0.0

    def ms(self) -> int:
        return round(min(LEAD_MAX_MS, LEAD_BASE_MS + 2 * self.spread_ms + self.late_ms))

    def sent(self, spread_ms: float) -> None:
        """A run's commands left within `spread_ms`."""
        self.spread_ms = max(spread_ms, self.spread_ms / 2)
        self.late_ms /= 2

    def late(self, ms: float) -> None:
        """A board got its command `ms` after the instant."""
        self.late_ms = max(self.late_ms, ms)


class SendSpread:
    """When the commands of one role/group run left: logged once every device's run has sent its command (or
    found it could not), as "N commands sent within X ms, due at T (L ms ahead)" — first to last, and the instant
    the boards act at (tools/bench/group.py reads both). The spread goes to the lead of the next run."""

    def __init__(self, row, job, expected: int, due: int, lead: Lead) -> None:
        self.row, self.job, self.expected, self.due, self.lead = row, job, expected, due, lead
        self.ahead = lead.ms()
        self.times: dict[uuid.UUID, float | None] = {}

    def note(self, execution_id: uuid.UUID, at: float | None) -> None:
        if execution_id in self.times:
            return
        self.times[execution_id] = at
        if len(self.times) == self.expected:
            sent = [t for t in self.times.values() if t is not None]
            within = (max(sent) - min(sent)) * 1000 if sent else 0.0
            unsent = f" ({self.expected - len(sent)} not sent)" if len(sent) < self.expected else ""
            self.lead.sent(within)
            log.info(
                "execution %s of %s: %d commands sent within %.1f ms%s, due at %s (%d ms ahead)",
                self.row["id"],
                self.job.name,
                len(sent),
                within,
                unsent,
                datetime.fromtimestamp(self.due / 1000, UTC).isoformat(timespec="milliseconds"),
                self.ahead,
                extra=_fields(self.row, self.job),
            )


def _seconds(row) -> float:
    """How long a run's command acts on its board (its `seconds` parameter, a blind's move), 0 if it says not."""
    return float(row["params"].get("seconds", 0) or 0)


def _fields(row, job=None) -> dict[str, Any]:
    """A run's structured log fields (`extra=`): what JSON logs carry beside the message."""
    fields = {"execution": str(row["id"]), "device": row["device_id"]}
    if job is not None:
        fields["job"] = job.name
    return fields
