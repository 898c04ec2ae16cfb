"""The instant a run starts: kept by the master's event loop, to the millisecond.

Huey's scheduler looks at its schedule once a second, so a run it starts is up to a second late. The durable
queue (jobs/queue.py) therefore hands each run over a lead time early, and runs planned here for the next few
minutes are handed over at once; either way they wait here, in one heap behind one timer of the event loop, and
start when the wall clock reaches their instant — never before it. Handing the same run over twice starts it
once while it waits; a late second hand-over starts it again, and its claim (one conditional UPDATE, runner.py)
finds nothing to do.

Layer: jobs (service side), no I/O of its own. Loop thread only (the queue's Huey threads use
`call_soon_threadsafe`). Nothing here is durable: after a crash the queue's records and `JobService.recover`
bring every planned run back.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

log = logging.getLogger(__name__)

FireFn = Callable[[uuid.UUID, int], Awaitable[None]]

# A timer longer than this is re-armed from the wall clock when it ends: the loop's clock is monotonic, the
# instants are wall-clock times, and the two drift apart when NTP steps the clock.
_MAX_SLEEP_S = 30.0


class Alarm:
    def __init__(self, fire: FireFn, *, wall: Callable[[], float] = time.time) -> None:
        self._fire = fire
        self._wall = wall
        self._heap: list[tuple[float, int, uuid.UUID, int]] = []  # (instant, tie-break, execution, attempt)
        self._waiting: set[tuple[uuid.UUID, int]] = set()
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._starting: set[asyncio.Task] = set()  # referenced until done (fire-and-forget)

    def __len__(self) -> int:
        return len(self._heap)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        """No more starts (runs already started go on: the runner holds them)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        self._heap.clear()
        self._waiting.clear()

    def add(self, execution_id: uuid.UUID, attempt: int, when: datetime) -> None:
        """Start the run at `when` (at once if that has passed)."""
        key = (execution_id, attempt)
        if key in self._waiting:
            return
        self._waiting.add(key)
        self._seq += 1
        instant = when.timestamp()
        heapq.heappush(self._heap, (instant, self._seq, execution_id, attempt))
        if instant < self._timer_at:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")
        if self._loop is None or not self._heap:
            return
        instant = self._heap[0][0]
        delay = min(max(0.0, instant - self._wall()), _MAX_SLEEP_S)
        self._timer = self._loop.call_later(delay, self._ring)
        self._timer_at = instant

    def _ring(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self._wall()
        while self._heap and self._heap[0][0] <= now:
            _, _, execution_id, attempt = heapq.heappop(self._heap)
            self._waiting.discard((execution_id, attempt))
            task = asyncio.get_running_loop().create_task(self._start(execution_id, attempt))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        self._arm()  # the next one (a timer may end a few µs before its wall-clock instant: armed again)

    async def _start(self, execution_id: uuid.UUID, attempt: int) -> None:
        try:
            await self._fire(execution_id, attempt)
        except Exception:  # the run stays scheduled in the database; the queue's record or a restart retries it
            log.exception("execution %s attempt %d could not be started", execution_id, attempt)
