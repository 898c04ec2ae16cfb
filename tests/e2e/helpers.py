"""Helpers for end-to-end tests: reading pin pulses off a virtual board, building job documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UP_PIN, DOWN_PIN = 25, 26  # the blind role's preset pins on a virtual board


def pulses(history: list[tuple[float, int, int]], pin: int) -> list[tuple[float, float]]:
    """(start, end) of every high period of `pin` in a board's recorded pin history."""
    out, since = [], None
    for t, p, value in history:
        if p != pin:
            continue
        if value and since is None:
            since = t
        elif not value and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, float("inf")))
    return out


def never_both_high(history: list[tuple[float, int, int]], a: int, b: int) -> bool:
    levels = {a: 0, b: 0}
    for _, pin, value in history:
        if pin in levels:
            levels[pin] = value
            if levels[a] and levels[b]:
                return False
    return True


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def blind_job(name: str, device: str, *, at_in: float, down_s: float, up_after_s: float, up_s: float,
              attempts: int = 1, backoff_s: float = 1) -> dict:
    return {
        "name": name,
        "target": {"device": device},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": down_s}},
        "trigger": {"type": "at", "at": iso_in(at_in)},
        "follow_ups": [{
            "on": "success",
            "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": up_s}},
            "trigger": {"type": "delay", "seconds": up_after_s},
        }],
        "retry": {"attempts": attempts, "backoff_s": backoff_s},
    }
