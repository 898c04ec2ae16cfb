"""What every reversing actuator does the same way: two outputs never on together, dead time, timed runs, stop.

Layer: device-side library for role modules (capabilities/board/blind.py, motor.py); imported by them, never on
the agent's boot path otherwise. No network, no configuration parsing: a module builds its pins and hands them in.

Actuator(pins, dead_ms, max_ms): `pins` maps the two directions to output Pins, off. The safety rules live
here, whatever the master does:
- the two outputs are never on together: an output found on is switched off before the other may go on;
- reversing waits `dead_ms` after the motor stopped (at boot too: a power cut may just have stopped it);
- every run ends by the board's own timer; a new run or a stop ends the running one (its reason: "replaced",
  "stopped"), and a cancelled run switches its output off on the way out.
A subclass may extend off() (a PWM enable goes to 0 first), _on(direction) (the blind notes the move first;
the motor's PWM power comes after the direction) and _settle(motion, end) (account for where a run left
things).

Times are ticks_ms(): on an ESP32 they wrap at 2^30 ms and ticks_diff spans only ±6.2 days, so an elapsed
time that comes out negative cannot be trusted and counts as long ago (since()).
"""

import asyncio

from agent.port import const, ticks_diff, ticks_ms, wait_for_ms

_MIN_DEAD_MS = const(100)  # a motor reversed sooner can weld its relay contacts
_LONG_AGO = const(0x3FFFFFFF)


def since(start):
    """ms from `start` (ticks_ms) to now; _LONG_AGO (~12 days) when ticks_diff wrapped (more than ~6.2 days
    ago)."""
    elapsed = ticks_diff(ticks_ms(), start)
    return elapsed if elapsed >= 0 else _LONG_AGO


class Run:
    """One requested run; `reason` is set when something ends it early."""

    __slots__ = ("wake", "reason")

    def __init__(self):
        self.wake = asyncio.Event()
        self.reason = None

    def end(self, reason):
        if self.reason is None:
            self.reason = reason
            self.wake.set()


class Actuator:
    def __init__(self, pins, dead_ms, max_ms):
        if dead_ms < _MIN_DEAD_MS:
            raise ValueError("dead_time_ms below %d is unsafe for a reversing motor" % _MIN_DEAD_MS)
        self._pins = pins
        # dead_ms and direction: names the board has anyway (a name of its own is a qstr: agent/executions.py)
        self.dead_ms = dead_ms
        self._max_ms = max_ms
        self._lock = asyncio.Lock()  # one run drives the pins at a time
        self._run = None  # the newest requested run
        self.direction = None  # of the last run that drove a pin
        self._off_at = ticks_ms()  # when the motor last stopped
        self._motion = None  # (direction, started) while a pin is on

    def off(self):
        for pin in self._pins.values():
            pin.off()

    def _on(self, direction):
        self._pins[direction].on()

    def _settle(self, motion, end):
        """The motor stopped; `end` is what _drive was given when the run went its full length, else None."""
        self._motion = None

    def replace(self):
        """A new run; the running one (if any) ends as "replaced"."""
        run = Run()
        previous, self._run = self._run, run
        if previous is not None:
            previous.end("replaced")
        return run

    async def _drive(self, run, direction, ms, out, end=None):
        """Under the lock: dead time, then `direction` on for ms unless the run ends first. Sets "ran_ms" and
        "stopped" in `out` (the command's answer); `end` goes to _settle when the run went its full length."""
        pin = self._pins[direction]
        for other in self._pins.values():
            if other is not pin and other.value():  # cannot happen through this class; never trust it
                self.off()
                self._off_at = ticks_ms()
        if self.direction != direction:  # None after boot: the motor may have run either way
            wait = self.dead_ms - since(self._off_at)
            if wait > 0:
                try:
                    await wait_for_ms(run.wake.wait(), wait)
                    out["stopped"] = run.reason  # ended (a stop or a newer run) before the dead time was over
                    return out
                except asyncio.TimeoutError:
                    pass
        if run.reason is not None:
            out["stopped"] = run.reason
            return out
        self._on(direction)
        started = ticks_ms()
        self.direction = direction
        motion = self._motion = (direction, started)
        ended_early = None
        try:
            try:
                await wait_for_ms(run.wake.wait(), ms)
                ended_early = True  # a stop or a newer run ended it
            except asyncio.TimeoutError:
                ended_early = False
        finally:
            self.off()  # also when cancelled: the motor never keeps running
            self._off_at = ticks_ms()
            if self._motion is motion:
                self._settle(motion, end if ended_early is False else None)
        out["ran_ms"] = ticks_diff(self._off_at, started)
        out["stopped"] = run.reason if ended_early else "elapsed"
        if self._run is run:
            self._run = None
        return out

    async def stop(self):
        """End the running run; returns once the motor is really off. True if one was running."""
        run = self._run
        moving = run is not None and run.reason is None
        if run is not None:
            run.end("stopped")
        async with self._lock:
            self.off()
        return moving
