"""Login rate limits: failures per client address and per name, in a sliding window. In memory, so a restart
forgets them (a restart is not something an attacker on the LAN can cause)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

FAILURES = 5
WINDOW_S = 15 * 60
_MAX_KEYS = 10_000  # beyond this, keys with no failure in the window are dropped (a spray of names costs memory)


class LoginLimiter:
    def __init__(
        self, failures: int = FAILURES, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[Hashable, deque[float]] = {}

    def retry_after(self, *keys: Hashable) -> int:
        """0 when an attempt may go ahead, else the seconds until the oldest counted failure leaves the window."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            seen = self._recent(key, now)
            if seen is not None and len(seen) >= self.failures:
                wait = max(wait, seen[0] + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, *keys: Hashable) -> None:
        now = self._clock()
        if len(self._seen) >= _MAX_KEYS:
            for key in list(self._seen):
                self._recent(key, now)  # drops keys whose failures all left the window
        for key in keys:
            self._seen.setdefault(key, deque()).append(now)

    def succeeded(self, *keys: Hashable) -> None:
        for key in keys:
            self._seen.pop(key, None)

    def _recent(self, key: Hashable, now: float) -> deque[float] | None:
        seen = self._seen.get(key)
        if seen is None:
            return None
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if not seen:
            del self._seen[key]
            return None
        return seen
