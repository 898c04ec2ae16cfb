"""Roller blind: one motor, two relay outputs (up, down); position 0 % (closed) .. 100 % (open) by travel time.

Layer: role module (runs on the board, loaded by agent/caps.py). Safety lives here, on the board, whatever
the master does: both outputs are off at setup; the two outputs are never on together (one is switched off
before the other may go on); reversing waits `dead_time_ms` after the motor stopped; every move ends by the
board's own timer, and no move is longer than `max_seconds`. A new move, goto or stop cancels the running one.

Position is dead reckoning, as in Tasmota's shutters and ESPHome's time-based cover: the time the motor ran,
over the full travel time of that direction (`up_s`, `down_s`). A move to 0 or 100 runs `overrun_s` longer
(default 10 % of the travel) so the blind surely reaches its end stop, which resynchronises the count; so does
any move at least as long as the full travel. Until then the position of a new board is unknown (null), and
a goto to anything but 0 or 100 is refused. The position is kept in state_blind.json, written when a move
starts (marked "moving", so a power cut during a move makes the position unknown rather than wrong) and when
it ends; never during a move. It must not talk to the network.
"""

import asyncio
import json
import os

from agent.port import const, ticks_diff, ticks_ms, wait_for_ms
from machine import Pin

NAME = "blind"
VERSION = "2"
COMMANDS = {
    "move": {
        "direction": {"type": "enum", "values": ["up", "down"]},
        "seconds": {"type": "number", "min": 0.1, "max": 120, "unit": "s"},
    },
    "stop": {},
    "position": {},
    "goto": {"position": {"type": "integer", "min": 0, "max": 100, "unit": "%"}},
    "calibrate": {
        "up_s": {"type": "number", "min": 1, "max": 300, "unit": "s", "required": False},
        "down_s": {"type": "number", "min": 1, "max": 300, "unit": "s", "required": False},
    },
}
CONFIG = {
    "up_pin": {"type": "integer", "min": 0, "max": 33},
    "down_pin": {"type": "integer", "min": 0, "max": 33},
    "dead_time_ms": {"type": "integer", "min": 100, "max": 10000, "unit": "ms", "required": False, "default": 500},
    "max_seconds": {"type": "number", "min": 1, "max": 600, "unit": "s", "required": False, "default": 120},
    "up_s": {"type": "number", "min": 1, "max": 300, "unit": "s", "required": False, "default": 30},
    "down_s": {"type": "number", "min": 1, "max": 300, "unit": "s", "required": False, "default": 30},
    # no default: 10 % of the direction's travel time
    "overrun_s": {"type": "number", "min": 0, "max": 60, "unit": "s", "required": False},
}

_STATE = "state_blind.json"
_MIN_DEAD_MS = const(100)  # a motor reversed sooner can weld its relay contacts


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


def _output_pin(number):
    # GPIO 6-11 drive the SPI flash, 34-39 are input-only: a relay there would crash the board or never switch
    if not 0 <= number <= 33 or 6 <= number <= 11:
        raise ValueError("GPIO %s cannot drive a relay" % number)
    return Pin(number, Pin.OUT, value=0)  # value=0 in the constructor: low at once, never glitching high


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
        if cfg["up_pin"] == cfg["down_pin"]:
            raise ValueError("up_pin and down_pin must differ")
        self._pins = {"up": _output_pin(cfg["up_pin"]), "down": _output_pin(cfg["down_pin"])}
        self._dead_ms = int(_get(cfg, "dead_time_ms"))
        if self._dead_ms < _MIN_DEAD_MS:
            raise ValueError("dead_time_ms below %d is unsafe for a reversing motor" % _MIN_DEAD_MS)
        self._max_ms = int(_get(cfg, "max_seconds") * 1000)
        overrun = cfg.get("overrun_s")
        self._overrun_ms = None if overrun is None else int(overrun * 1000)
        self._cfg_travel = [_get(cfg, "up_s"), _get(cfg, "down_s")]
        self._lock = asyncio.Lock()  # one move drives the pins at a time
        self._run = None  # the newest requested move
        self._last_dir = None  # direction of the last move that drove a pin
        self._off_at = ticks_ms()  # when the motor last stopped; at boot, a power cut may just have stopped it
        self._motion = None  # (direction, started) while a pin is on
        self._pos = None
        self._travel = {}
        up_s, down_s = self._cfg_travel
        try:
            with open(_STATE) as f:
                state = json.load(f)
            if not state.get("moving"):  # else the power went off during a move: where it stopped is unknown
                self._pos = state.get("position")
            if state.get("cfg") == self._cfg_travel:  # calibrated against this configuration
                up_s, down_s = state["up_s"], state["down_s"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # first boot, or a damaged file: position unknown, travel times from the configuration
        self._set_travel(up_s, down_s)

    def _set_travel(self, up_s, down_s):
        travel = {"up": int(up_s * 1000), "down": int(down_s * 1000)}
        for direction, ms in travel.items():
            if ms <= 0 or ms + self._overrun(ms) > self._max_ms:
                raise ValueError("%s travel plus over-run must fit max_seconds" % direction)
        self._travel = travel

    def _overrun(self, travel_ms):
        return travel_ms // 10 if self._overrun_ms is None else self._overrun_ms

    def off(self):
        self._pins["up"].off()
        self._pins["down"].off()

    # -- position by travel time ----------------------------------------------------------------------

    def _after(self, direction, ran_ms):
        """The position after running `ran_ms` in `direction` from the last known position."""
        travel = self._travel[direction]
        end = 100 if direction == "up" else 0
        if ran_ms >= travel:
            return end  # a full travel reaches the end stop from anywhere
        if self._pos is None:
            return None
        step = ran_ms * 100 / travel
        return min(100, self._pos + step) if end else max(0, self._pos - step)

    def _now(self):
        motion = self._motion
        if motion is None:
            return self._pos
        return self._after(motion[0], ticks_diff(ticks_ms(), motion[1]))

    def _save(self, moving=None):
        state = {
            "position": self._pos,
            "moving": moving,
            "up_s": self._travel["up"] / 1000,
            "down_s": self._travel["down"] / 1000,
            "cfg": self._cfg_travel,
        }
        try:
            with open(_STATE + ".new", "w") as f:
                json.dump(state, f)
            os.rename(_STATE + ".new", _STATE)  # littlefs renames atomically: old or new, never half
        except OSError as exc:
            print("blind: cannot save the position:", exc)

    def _settle(self, motion, end=None):
        """The motor stopped: account for the time it ran (once, whoever stops it first); `end` when a run
        to an end stop went its full length (travel and over-run), whatever the count says."""
        if self._motion is motion:
            self._pos = end if end is not None else self._after(motion[0], ticks_diff(self._off_at, motion[1]))
            self._motion = None
            self._save()

    def _position(self):
        pos = self._pos
        return None if pos is None else int(pos + 0.5)

    # -- commands --------------------------------------------------------------------------------------

    def _replace(self):
        run = _Run()
        previous, self._run = self._run, run
        if previous is not None:
            previous.end("replaced")
        return run

    async def move(self, direction, seconds):
        if direction not in self._pins:
            raise ValueError("direction must be up or down")
        if not 0 < seconds * 1000 <= self._max_ms:
            raise ValueError("seconds must be in (0, %s]" % (self._max_ms / 1000))
        run = self._replace()
        async with self._lock:  # the previous move has switched its pin off when we get here
            return await self._drive(run, direction, int(seconds * 1000))

    async def goto(self, position):
        if not 0 <= position <= 100:
            raise ValueError("position must be 0..100")
        run = self._replace()
        async with self._lock:  # where we start from is known once the previous move has ended
            return await self._goto(run, position)

    async def _goto(self, run, position):
        pos = self._pos
        if pos is None and position not in (0, 100):
            raise ValueError("position unknown: goto 0 or 100 (or calibrate) first")
        if pos is not None and abs(position - pos) < 0.5:
            return {"position": self._position(), "ran_ms": 0, "stopped": "there"}
        direction = "up" if pos is None and position == 100 or pos is not None and position > pos else "down"
        travel = self._travel[direction]
        distance = 100 if pos is None else abs(position - pos)
        ms = int(distance * travel / 100)
        end = None
        if position in (0, 100):
            ms += self._overrun(travel)
            end = position
        return await self._drive(run, direction, ms, end)

    async def calibrate(self, up_s=None, down_s=None):
        if up_s is not None or down_s is not None:
            run = self._replace()
            async with self._lock:
                self._set_travel(up_s or self._travel["up"] / 1000, down_s or self._travel["down"] / 1000)
                if run.reason is None:
                    self._save()
            return {
                "up_s": self._travel["up"] / 1000,
                "down_s": self._travel["down"] / 1000,
                "position": self._position(),
            }
        # a calibration run: fully up from wherever it is, then it is at 100
        run = self._replace()
        async with self._lock:
            self._pos = None
            return await self._goto(run, 100)

    async def position(self):
        motion = self._motion
        pos = self._now()
        return {"position": None if pos is None else int(pos + 0.5), "moving": None if motion is None else motion[0]}

    async def _drive(self, run, direction, ms, end=None):
        pin = self._pins[direction]
        other = self._pins["down" if direction == "up" else "up"]
        result = {
            "direction": direction,
            "seconds": ms / 1000,
            "ran_ms": 0,
            "stopped": "replaced",
            "position": self._position(),
        }
        if other.value():  # cannot happen through this class; refuse to trust it anyway
            other.off()
            self._off_at = ticks_ms()
        if self._last_dir != direction:  # None after boot: the motor may have run either way
            wait = self._dead_ms - ticks_diff(ticks_ms(), self._off_at)
            if wait > 0 and await self._sleep_unless_ended(run, wait):
                result["stopped"] = run.reason
                return result
        if run.reason is not None:
            result["stopped"] = run.reason
            return result
        self._save(moving=direction)
        pin.on()
        started = ticks_ms()
        self._last_dir = direction
        motion = self._motion = (direction, started)
        ended_early = None
        try:
            ended_early = await self._sleep_unless_ended(run, ms)
        finally:
            pin.off()  # also when cancelled: the motor never keeps running
            self._off_at = ticks_ms()
            self._settle(motion, end if ended_early is False else None)
        result["ran_ms"] = ticks_diff(self._off_at, started)
        result["stopped"] = run.reason if ended_early else "elapsed"
        result["position"] = self._position()
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
    """Agent shutdown: motor off now (the running move's task may never run again), position kept."""
    blind.off()
    motion = blind._motion
    if motion is not None:
        blind._off_at = ticks_ms()
        blind._settle(motion)
