"""The ESP32's millisecond tick counter for the virtual board: 30 bits, starting where a test wants it.

Layer: unix-port shim (never copied to a board). On the ESP32 port small ints have 31 bits, so
time.ticks_ms() wraps at 2^30 ms (12.4 days) and ticks_diff() spans only ±2^29 ms (±6.2 days); the 64-bit
unix port wraps at 2^62 and never shows it. With PIFLEET_SIM_TICKS=N in its environment the virtual board
(shims/_boot.py) and the capability runner (tests) give the agent and its role modules this counter instead,
starting at N (e.g. 1073736824: the wrap 5 s after boot): install() replaces agent.port's ticks_ms,
ticks_add and ticks_diff before anything imports them. asyncio keeps the port's own clock, as it does on a
board (its C task queue never sees these ticks). skip(ms) moves the counter on, as a week's holiday would.
"""

import os
import time

PERIOD = 1 << 30  # MICROPY_PY_TIME_TICKS_PERIOD on the ESP32 port: MP_SMALL_INT_POSITIVE_MASK + 1
_HALF = PERIOD >> 1
_MASK = PERIOD - 1

_base = time.ticks_ms()
_start = 0


def ticks_ms():
    return (time.ticks_diff(time.ticks_ms(), _base) + _start) & _MASK


def ticks_add(ticks, delta):
    # the port refuses a delta it cannot represent (extmod/modtime.c)
    if not -_HALF <= delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


def skip(ms):
    """Let `ms` pass for whoever reads these ticks (not for asyncio's sleeps)."""
    global _start
    _start += ms


def install():
    """Give agent.port (and so every module that imports its ticks afterwards) this counter, when
    PIFLEET_SIM_TICKS asks for it. True if installed."""
    global _start
    start = os.getenv("PIFLEET_SIM_TICKS")
    if not start:
        return False
    _start = int(start) & _MASK
    import agent.port as port

    port.ticks_ms = ticks_ms
    port.ticks_add = ticks_add
    port.ticks_diff = ticks_diff
    print("sim: ticks_ms() starts at %d and wraps at 2^30" % _start)
    return True
