"""Huey on PostgreSQL: the durable queue and schedule of execution runs, and its one thin task.

Huey's PostgresHuey keeps queue and schedule in the master's own database, so a run scheduled for 07:00
survives a restart of the Pi. The task only says "run execution X, attempt N"; everything else lives in the
job_executions table (jobs/runner.py), which is the source of truth.

Huey workers are threads; the run itself is a coroutine on the master's event loop (where the CoAP context
and the database pool live), so the task hands it over with run_coroutine_threadsafe and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from huey import PostgresHuey
from huey.consumer import Consumer

log = logging.getLogger(__name__)

RunFn = Callable[[uuid.UUID, int], Awaitable[None]]


class _EmbeddedConsumer(Consumer):
    """Huey's consumer without its signal handlers: inside `pifleet serve` the master owns the signals."""

    def _set_signal_handlers(self) -> None:
        pass


class JobQueue:
    def __init__(self, dsn: str, *, workers: int = 4, name: str = "pifleet") -> None:
        self.huey = PostgresHuey(name, dsn=dsn, utc=True, results=False)
        self.workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: RunFn | None = None
        self._consumer: Consumer | None = None
        self.task = self.huey.task(name="pifleet.run_execution")(self._execute)

    def _execute(self, execution_id: str, attempt: int) -> None:
        if self._loop is None or self._run is None:
            raise RuntimeError("job queue consumer not attached to a running master")
        future = asyncio.run_coroutine_threadsafe(self._run(uuid.UUID(execution_id), attempt), self._loop)
        future.result()

    def schedule_blocking(self, execution_id: uuid.UUID, attempt: int, eta: datetime) -> None:
        self.task.schedule(args=(str(execution_id), attempt), eta=eta)

    async def schedule(self, execution_id: uuid.UUID, attempt: int, eta: datetime) -> None:
        # psycopg is synchronous: keep its round trip off the event loop
        await asyncio.to_thread(self.schedule_blocking, execution_id, attempt, eta)

    def start(self, loop: asyncio.AbstractEventLoop, run: RunFn) -> None:
        self._loop, self._run = loop, run
        self._consumer = _EmbeddedConsumer(
            self.huey,
            workers=self.workers,
            worker_type="thread",
            periodic=False,
            scheduler_interval=1,
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
        self.huey.storage.close()
