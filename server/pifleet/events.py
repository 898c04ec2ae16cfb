"""In-process publish/subscribe of "something changed" notices, feeding the dashboard's server-sent events.

Publishers call `publish(topic)` from the event loop; each subscriber gets its own bounded queue, and a slow
subscriber loses old notices rather than slowing anyone (a notice only says "refresh this part").

A notice may carry data and be `about` one thing (a board's log lines, "logs" about its device id): those reach
only the subscribers that follow that thing (`subscribe(follow={id})`), so a page that shows no log is not sent
every board's lines. Such a notice carries numbered lines, so a follower that lost one notices the gap and reads
what it missed from the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

TOPICS = (
    "devices",
    "jobs",
    "executions",
    "boards",
    "flash",
    "adoptions",
    "modules",
    "roles",
    "rollouts",
    "telemetry",
    "logs",
    "state",  # a capability's live state changed: {"device", "capability", "values", "at"} (devices/state.py)
)

Notice = tuple[str, str]  # (topic, data: JSON text)


class EventHub:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def publish(self, topic: str, data: str = "{}", *, about: str | None = None) -> None:
        for subscription in self._subscriptions:
            if about is None or about in subscription.follow:
                subscription.put((topic, data))

    def subscribe(self, follow: Iterable[str] = ()) -> Subscription:
        """A subscriber's own queue of notices, until it is closed (use it as a context manager); it also gets the
        notices about the things it follows."""
        return Subscription(self._subscriptions, frozenset(follow))


class Subscription:
    """Notices for one subscriber. `next(timeout)` may be cut short any time without losing the subscription
    (an async generator cancelled mid-wait would close for good)."""

    def __init__(self, subscriptions: set[Subscription], follow: frozenset[str]) -> None:
        self._subscriptions = subscriptions
        self.follow = follow
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=32)
        subscriptions.add(self)

    def put(self, notice: Notice) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(notice)

    async def next(self, timeout: float) -> Notice | None:
        """The next (topic, data), or None when none came within `timeout` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._subscriptions.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
