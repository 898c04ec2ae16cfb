"""In-process publish/subscribe of "something changed" notices, feeding the dashboard's server-sent events.

Publishers call `publish(topic)` from the event loop; each subscriber gets its own bounded queue, and a slow
subscriber loses old notices rather than slowing anyone (a notice only says "refresh this part").
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

TOPICS = ("devices", "jobs", "executions", "boards", "flash", "adoptions", "modules", "roles", "rollouts", "telemetry")


class EventHub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()

    def publish(self, topic: str) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(topic)

    def subscribe(self) -> Subscription:
        """A subscriber's own queue of notices, until it is closed (use it as a context manager)."""
        return Subscription(self._queues)


class Subscription:
    """Notices for one subscriber. `next(timeout)` may be cut short any time without losing the subscription
    (an async generator cancelled mid-wait would close for good)."""

    def __init__(self, queues: set[asyncio.Queue[str]]) -> None:
        self._queues = queues
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=32)
        queues.add(self._queue)

    async def next(self, timeout: float) -> str | None:
        """The next topic, or None when none came within `timeout` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._queues.discard(self._queue)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
