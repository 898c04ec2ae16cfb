"""Waiting for a condition, never for a fixed time: every wait says what it waited for and, through explain(),
what the system looked like (a board's console, a master's log) when it gave up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "",
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll until predicate() is truthy; on timeout fail saying what was awaited (and explain(), e.g. a board's
    console, so a failure in CI can be understood from its log alone)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - polling until the system gets there
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise _timed_out(predicate, timeout, what, explain, last_exc)


async def wait_until_async(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.01,
    what: str = "",
    explain: Callable[[], str] | None = None,
) -> Any:
    """wait_until() inside a running event loop: polls without blocking it (the loop may be the one that makes
    the condition come true, e.g. a command task in flight)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - polling until the system gets there
            last_exc = exc
            value = None
        if value:
            return value
        await asyncio.sleep(interval)
    raise _timed_out(predicate, timeout, what, explain, last_exc)


def _timed_out(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    explain: Callable[[], str] | None,
    last_exc: Exception | None,
) -> AssertionError:
    return AssertionError(
        f"timed out after {timeout} s waiting for {what or predicate}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
        + (f"\n{explain()}" if explain else "")
    )
