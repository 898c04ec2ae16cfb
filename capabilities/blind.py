"""Roller blind: one motor, two relay outputs (up, down).

Layer: role module (runs on the board, loaded by agent/caps.py). Safety lives here, on the board, whatever
the master does: both outputs are off at setup; the two outputs are never on together (one is switched off
before the other may go on); reversing waits `dead_time_ms` after the motor stopped; every move ends by the
board's own timer. A new move or stop cancels the running move. It must not talk to the network.
"""

import asyncio
from machine import Pin

from agent.port import sleep_ms, ticks_diff, ticks_ms, wait_for_ms

NAME = "blind"
VERSION = "1"
COMMANDS = {
    "move": {
        "direction": {"type": "enum", "values": ["up", "down"]},
        "seconds": {"type": "number", "min": 0.1, "max": 120, "unit": "s"},
    },
    "stop": {},
}


class _Run:
    """One requested move; `reason` is set when something ends it early."""

    __slots__ = ("wake", "reason")

    def __init__(self):
        self.wake = asyncio.Event()
        self.reason = None

    def end(self, reason):
        if self.reason is None:
            self.reason = reason
            self.wake.set()


class Blind:
    def __init__(self, cfg):
        # value=0 in the constructor: the pin becomes an output already low, never glitching high.
        self._pins = {"up": Pin(cfg["up_pin"], Pin.OUT, value=0),
                      "down": Pin(cfg["down_pin"], Pin.OUT, value=0)}
        self._dead_ms = int(cfg.get("dead_time_ms", 500))
        self._max_s = cfg.get("max_seconds", 120)
        self._lock = asyncio.Lock()  # one move drives the pins at a time
        self._run = None  # the newest requested move
        self._last_dir = None  # direction of the last move that drove a pin
        self._off_at = ticks_ms()  # when the motor last stopped

    def off(self):
        self._pins["up"].off()
        self._pins["down"].off()

    async def move(self, direction, seconds):
        if direction not in self._pins:
            raise ValueError("direction must be up or down")
        if not 0 < seconds <= self._max_s:
            raise ValueError("seconds must be in (0, %s]" % self._max_s)
        run = _Run()
        previous, self._run = self._run, run
        if previous is not None:
            previous.end("replaced")
        async with self._lock:  # the previous move has switched its pin off when we get here
            return await self._drive(run, direction, seconds)

    async def _drive(self, run, direction, seconds):
        pin = self._pins[direction]
        other = self._pins["down" if direction == "up" else "up"]
        result = {"direction": direction, "seconds": seconds, "ran_ms": 0, "stopped": "replaced"}
        if other.value():  # cannot happen through this class; refuse to trust it anyway
            other.off()
            self._off_at = ticks_ms()
        if self._last_dir is not None and self._last_dir != direction:
            wait = self._dead_ms - ticks_diff(ticks_ms(), self._off_at)
            if wait > 0 and await self._sleep_unless_ended(run, wait):
                result["stopped"] = run.reason
                return result
        if run.reason is not None:
            result["stopped"] = run.reason
            return result
        pin.on()
        started = ticks_ms()
        self._last_dir = direction
        try:
            ended_early = await self._sleep_unless_ended(run, int(seconds * 1000))
        finally:
            pin.off()  # also when cancelled: the motor never keeps running
            self._off_at = ticks_ms()
        result["ran_ms"] = ticks_diff(self._off_at, started)
        result["stopped"] = run.reason if ended_early else "elapsed"
        if self._run is run:
            self._run = None
        return result

    async def _sleep_unless_ended(self, run, ms):
        """Sleep ms; True if the run was ended (stop or a newer move) before that."""
        try:
            await wait_for_ms(run.wake.wait(), ms)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self):
        run = self._run
        moving = run is not None and run.reason is None
        if run is not None:
            run.end("stopped")
        async with self._lock:  # returns once the motor is really off
            self.off()
        return {"was_moving": moving}


def setup(cfg):
    blind = Blind(cfg)
    blind.off()
    return blind


def stop(blind):
    """Agent shutdown: motor off now (the running move's task may never run again)."""
    blind.off()
