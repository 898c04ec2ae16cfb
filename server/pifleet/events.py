"""In-process publish/subscribe of "something changed" notices, feeding the dashboard's server-sent events.

Publishers call `publish(topic)` from the event loop; each subscriber gets its own bounded queue, and a slow
subscriber loses old notices rather than slowing anyone (a notice only says "refresh this part").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

TOPICS = ("devices", "jobs", "executions", "boards", "flash", "adoptions", "modules", "roles", "rollouts",
          "telemetry")


class EventHub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()

    def publish(self, topic: str) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(topic)

    async def subscribe(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=32)
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)
