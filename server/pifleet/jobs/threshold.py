"""Threshold triggers: the state machine (pure) and the watcher that feeds it readings (a master loop).

Once per crossing: a fired trigger is disarmed and re-armed only when the value comes back past the limit by
the hysteresis, so a value hovering at the limit fires once, not on every reading.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ..devices.link import BoardLink
from ..errors import InvalidError, PifleetError
from ..model import ThresholdTrigger
from ..storage import devices as devices_q
from ..storage import jobs as jobs_q
from . import results

log = logging.getLogger(__name__)


@dataclass
class State:
    armed: bool = True
    since: datetime | None = None


def validate(trigger: ThresholdTrigger) -> None:
    if (trigger.above is None) == (trigger.below is None):
        raise InvalidError("give exactly one of above or below", field="trigger.above")


def step(trigger: ThresholdTrigger, state: State, value: float, at: datetime) -> tuple[State, bool]:
    """Feed one reading; returns the new state and whether the trigger fires now."""
    if trigger.above is not None:
        crossed, back = value > trigger.above, value < trigger.above - trigger.hysteresis
    else:
        crossed, back = value < trigger.below, value > trigger.below + trigger.hysteresis
    if not state.armed:
        return (State(armed=True) if back else state), False
    if not crossed:
        return State(armed=True), False
    since = state.since or at
    if at - since >= timedelta(seconds=trigger.for_s):
        return State(armed=False), True
    return State(armed=True, since=since), False


class ThresholdWatcher:
    """Reads the sources of all threshold jobs when due, stores the readings, and plans a run on a crossing."""

    def __init__(self, pool: asyncpg.Pool, link: BoardLink, jobs, command_timeout_s: float, owns=None) -> None:
        self.pool = pool
        self.link = link
        self.owns = owns  # device id -> whether this master reads it (several sites: each its own boards)
        self.jobs = jobs  # JobService
        self.command_timeout_s = command_timeout_s
        self._next_read: dict[int, datetime] = {}

    async def run(self, tick: float = 0.2) -> None:
        while True:
            try:
                await self.poll_due()
            except (OSError, asyncpg.PostgresError):
                log.exception("threshold watch failed; retrying")
            await asyncio.sleep(tick)

    async def poll_due(self) -> None:
        now = datetime.now().astimezone()
        for job in await jobs_q.threshold_jobs(self.pool):
            trigger: ThresholdTrigger = job.spec.trigger
            if self._next_read.get(job.id, now) > now:
                continue
            self._next_read[job.id] = now + timedelta(seconds=trigger.poll_s)
            value = await self._read(trigger)
            if value is not None:
                await self.observe(job, value)

    async def _read(self, trigger: ThresholdTrigger) -> float | None:
        device = await devices_q.get_by_name(self.pool, trigger.device)
        if device is None or not device.online or (self.owns is not None and not self.owns(device.id)):
            return None
        try:
            result = await self.link.command(
                device.id,
                device.address,
                device.port,
                trigger.capability,
                trigger.command,
                f"poll-{uuid.uuid4()}",
                {},
                self.command_timeout_s,
            )
            value = results.lookup(result, trigger.path)
        except (PifleetError, results.MissingValue) as exc:
            log.info(
                "threshold source %s.%s on %s: %s",
                trigger.capability,
                trigger.command,
                trigger.device,
                getattr(exc, "detail", exc),
            )
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            log.warning("threshold source %s gave %r at %r, not a number", trigger.device, value, trigger.path)
            return None
        await self.pool.execute(
            "insert into readings (device_id, capability, path, value) values ($1, $2, $3, $4)",
            device.id,
            trigger.capability,
            trigger.path,
            float(value),
        )
        return float(value)

    async def observe(self, job, value: float) -> None:
        """One reading for one threshold job: advance its state machine, plan a run if it fires."""
        at = datetime.now().astimezone()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("select armed, since from threshold_state where job_id = $1 for update", job.id)
            state = State(row["armed"], row["since"]) if row else State()
            state, fire = step(job.spec.trigger, state, value, at)
            await conn.execute(
                """insert into threshold_state (job_id, armed, since, last_value, last_read)
                   values ($1, $2, $3, $4, $5)
                   on conflict (job_id) do update set armed = $2, since = $3, last_value = $4, last_read = $5""",
                job.id,
                state.armed,
                state.since,
                value,
                at,
            )
        if fire and not job.paused and job.spec.enabled:
            log.info("threshold job %s fires: %s=%s", job.name, job.spec.trigger.path, value)
            await self.jobs.plan_now(job)
