"""Reading a virtual board's pin history (VirtualBoard.pin_history(): (seconds, pin, level) per change)."""

from __future__ import annotations

History = list[tuple[float, int, int]]


def high_periods(history: History, pin: int, since: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) of every high period of `pin` after `since`; end is inf while the pin is still high."""
    out, start = [], None
    for t, p, value in history:
        if p != pin or t < since:
            continue
        if value and start is None:
            start = t
        elif not value and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, float("inf")))
    return out


def never_both_high(history: History, a: int, b: int) -> bool:
    """The interlock held: pins a and b were never high at the same time."""
    levels = {a: 0, b: 0}
    for _, pin, value in history:
        if pin in levels:
            levels[pin] = value
            if levels[a] and levels[b]:
                return False
    return True
