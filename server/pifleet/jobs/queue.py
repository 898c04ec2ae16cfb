"""Huey on PostgreSQL: the durable record of every planned run, and its one thin task.

Huey's PostgresHuey keeps queue and schedule in the master's own database, so a run scheduled for 07:00
survives a restart of the Pi. The task only says "run execution X, attempt N, at instant T"; everything else
lives in the job_executions table (jobs/runner.py), which is the source of truth.

Huey does not decide the instant: its scheduler looks at its schedule once a second. Each run is recorded in
Huey's schedule LEAD_S before its instant; when Huey delivers it, the task hands it to the master's event loop
(jobs/alarm.py), which starts it at its instant to the millisecond. Runs planned for the next HORIZON_S are also
given to the alarm at once, so a run planned "now" (a role's devices, run now, a retry soon) does not wait for
Huey at all; Huey's delivery of it then finds it started (or its claim finds nothing). The task returns as soon
as it has handed the run over: a worker thread never waits for a device.

At each start the master rebuilds this queue's Huey schedule from job_executions (`replace_all`): the table
says what is planned, so a run whose Huey record was consumed before a crash is recorded again, and records of
runs that were cancelled or replaced meanwhile do not pile up.

Several sites (sites/): each site has a Huey queue of its own (`pifleet.NAME`; the default site's is `pifleet`),
and a start rebuilds only its own. A run is recorded in the queue of its device's site (job_executions.site), so
the master that owns the board runs it; one due soon is also announced on that site's channel for its alarm (in
the same transaction as its record). A run without a device (a role's or group's, before it fans out) is
recorded in the queue of every site heard of lately: whichever master claims it first fans it out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta

from huey import PostgresHuey
from huey.consumer import Consumer

from ..sites import DEFAULT, channel, queue_name
from .alarm import Alarm

log = logging.getLogger(__name__)

RunFn = Callable[[uuid.UUID, int], Awaitable[None]]
Run = tuple[uuid.UUID, int, datetime]  # execution, attempt, instant

HUEY_SCHEDULER_INTERVAL_S = 1
LEAD_S = 3.0  # Huey delivers a run this early: its scheduler's second, a busy worker, a loaded Pi
HORIZON_S = 300.0  # runs due within this are given to the event loop's alarm as soon as they are planned


class _EmbeddedConsumer(Consumer):
    """Huey's consumer without its signal handlers: inside `pifleet serve` the master owns the signals."""

    def _set_signal_handlers(self) -> None:
        pass


_UNKNOWN = object()  # a run whose row is gone: recorded here, its claim finds nothing
_DDL_LOCK = 0x70660002  # the advisory lock under which Huey's tables are created


class JobQueue:
    def __init__(
        self,
        dsn: str,
        *,
        workers: int = 4,
        site: str = DEFAULT,
        live: Callable[[], frozenset[str]] | None = None,
        notice: Callable[[uuid.UUID, int, datetime], str] | None = None,
    ) -> None:
        self.site = site
        self.huey = PostgresHuey(queue_name(site), dsn=dsn, utc=True, results=False, create_tables=False)
        self._create_tables()
        self.workers = workers
        self._live = live or (lambda: frozenset({site}))  # the sites heard of lately (sites.service.Sites.live)
        self._notice = notice  # a run's announcement on another site's channel (Sites.run_notice)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Consumer | None = None
        self.alarm: Alarm | None = None
        self.task = self.huey.task(name="pifleet.run_execution")(self._execute)

    def _create_tables(self) -> None:
        """Huey's tables, created once: two masters (sites) starting on a fresh database at the same moment would
        both run its `create table if not exists` and one would fail, so they take turns under a lock."""
        storage = self.huey.storage
        with storage.db(commit=True) as curs:
            curs.execute("select pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for sql in storage.ddl:
                curs.execute(sql)

    def _execute(self, execution_id: str, attempt: int, at: str | None = None) -> None:
        """Huey's delivery (a worker thread), LEAD_S early: the event loop's alarm starts the run at `at`. (A
        record written before the alarm existed has no `at`: it starts at once.)"""
        loop, alarm = self._loop, self.alarm
        if loop is None or alarm is None:
            raise RuntimeError("job queue consumer not attached to a running master")
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
        loop.call_soon_threadsafe(alarm.add, uuid.UUID(execution_id), attempt, when)

    # -- recording runs ---------------------------------------------------------------------------------------

    def _record(self, execution_id: uuid.UUID, attempt: int, when: datetime):
        # Huey (utc=True) turns an aware eta into naive UTC and files it under that naive value's .timestamp(), as
        # its own add_to_schedule does (its scheduler reads the schedule the same way)
        task = self.task.s(str(execution_id), attempt, when.isoformat(), eta=when - timedelta(seconds=LEAD_S))
        return self.huey.serialize_task(task), task.eta.timestamp()

    def _sites(self, curs, runs: list[Run]) -> dict[uuid.UUID, str | None]:
        """The site of each run (None: a run without a device, anyone's)."""
        curs.execute("select id, site from job_executions where id = any(%s)", ([run[0] for run in runs],))
        return dict(curs.fetchall())

    def _insert(self, curs, runs: list[Run], *, own_only: bool = False) -> list[Run]:
        """Record each run in the queue of its site (a run without a device: in every live site's), announce those
        due soon to the other sites' alarms; returns the runs this site's own alarm should hear of."""
        sites = self._sites(curs, runs) if runs else {}
        live = self._live() | {self.site}
        horizon = datetime.now(UTC) + timedelta(seconds=HORIZON_S)
        rows, notices, local = [], [], []
        for run in runs:
            site = sites.get(run[0], _UNKNOWN)
            if site is _UNKNOWN or site == self.site:
                targets = {self.site}
            elif site is None:
                targets = {self.site} if own_only else live
            elif own_only:
                continue  # another site's: that site rebuilds its own queue
            else:
                targets = {site}
            data, ts = self._record(*run)
            rows += [(queue_name(target), data, ts) for target in targets]
            if self.site in targets:
                local.append(run)
            if self._notice is not None and site not in (None, _UNKNOWN, self.site) and run[2] <= horizon:
                notices.append((channel(site), self._notice(*run)))
        if rows:
            curs.executemany(
                f"insert into {self.huey.storage.table_schedule} (queue, data, timestamp) values (%s, %s, %s)", rows
            )
        if notices:  # delivered at the commit, with the records
            curs.executemany("select pg_notify(%s, %s)", notices)
        return local

    def schedule_many_blocking(self, runs: list[Run]) -> list[Run]:
        with self.huey.storage.db(commit=True) as curs:
            return self._insert(curs, runs)

    def replace_all_blocking(self, runs: list[Run]) -> list[Run]:
        """This queue's Huey schedule becomes exactly this site's share of `runs` (one transaction)."""
        storage = self.huey.storage
        with storage.db(commit=True) as curs:
            curs.execute(f"delete from {storage.table_schedule} where queue = %s", (storage.name,))
            return self._insert(curs, runs, own_only=True)

    async def schedule(self, execution_id: uuid.UUID, attempt: int, eta: datetime) -> None:
        await self.schedule_many([(execution_id, attempt, eta)])

    async def schedule_many(self, runs: list[Run]) -> None:
        """Record runs in Huey's schedule (one round trip for all) and give those due soon to the alarm."""
        if not runs:
            return
        # psycopg is synchronous: keep its round trips off the event loop
        local = await asyncio.to_thread(self.schedule_many_blocking, runs)
        self._wake(local)

    async def replace_all(self, runs: list[Run]) -> None:
        local = await asyncio.to_thread(self.replace_all_blocking, runs)
        self._wake(local)
        log.info("Huey schedule of site %s rebuilt from the planned runs: %d", self.site, len(local))

    def _wake(self, runs: Iterable[Run]) -> None:
        if self.alarm is None:
            return
        horizon = datetime.now(UTC) + timedelta(seconds=HORIZON_S)
        for execution_id, attempt, when in runs:
            if when <= horizon:
                self.alarm.add(execution_id, attempt, when)

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, run: RunFn) -> None:
        self._loop = loop
        self.alarm = Alarm(run)
        self.alarm.start(loop)
        self._consumer = _EmbeddedConsumer(
            self.huey,
            workers=self.workers,
            worker_type="thread",
            periodic=False,
            scheduler_interval=HUEY_SCHEDULER_INTERVAL_S,
            check_worker_health=False,
        )
        self._consumer.start()
        log.info("Huey consumer started (%d worker threads, PostgreSQL storage)", self.workers)

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.stop(graceful=False)
            for _, thread in self._consumer.worker_threads:
                thread.join(timeout=5)
            self._consumer.scheduler.join(timeout=5)
            self._consumer = None
        if self._loop is not None and self.alarm is not None:
            alarm = self.alarm
            self._loop.call_soon_threadsafe(alarm.stop)
        self.huey.storage.close()
