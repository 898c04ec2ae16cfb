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
it ends; never during a move. It must not talk to the network: its STATE (position, moving) goes to the master
through the agent (agent/state.py), reported when a move starts, every half second while it runs, and when it
ends.
"""

import json
import os

from agent.actuator import Actuator, since
from agent.port import ticks_diff, ticks_ms
from machine import Pin

NAME = "blind"
VERSION = "3"
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
STATE = {
    "position": {"type": "integer", "min": 0, "max": 100, "unit": "%"},
    "moving": {"type": "enum", "values": ["up", "down"], "null": "idle"},  # null: standing still
}
CONFIG = {
    "up_pin": {"type": "integer", "pin": "out"},
    "down_pin": {"type": "integer", "pin": "out"},
    "dead_time_ms": {"type": "integer", "min": 100, "max": 10000, "unit": "ms", "required": False, "default": 500},
    "max_seconds": {"type": "number", "min": 1, "max": 600, "unit": "s", "required": False, "default": 120},
    "up_s": {"type": "number", "min": 1, "max": 300, "unit": "s", "required": False, "default": 30},
    "down_s": {"type": "number", "min": 1, "max": 300, "unit": "s", "required": False, "default": 30},
    # no default: 10 % of the direction's travel time
    "overrun_s": {"type": "number", "min": 0, "max": 60, "unit": "s", "required": False},
}

_STATE = "state_blind.json"


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


def _output_pin(number):
    # value=0 in the constructor: low at once, never glitching high
    return Pin(number, Pin.OUT, value=0)


class Blind(Actuator):
    def __init__(self, cfg):
        if cfg["up_pin"] == cfg["down_pin"]:
            raise ValueError("up_pin and down_pin must differ")
        pins = {"up": _output_pin(cfg["up_pin"]), "down": _output_pin(cfg["down_pin"])}
        Actuator.__init__(self, pins, int(_get(cfg, "dead_time_ms")), int(_get(cfg, "max_seconds") * 1000))
        overrun = cfg.get("overrun_s")
        self._overrun_ms = None if overrun is None else int(overrun * 1000)
        self._cfg_travel = [_get(cfg, "up_s"), _get(cfg, "down_s")]
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
        return self._after(motion[0], since(motion[1]))

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

    def _on(self, direction):
        self._save(moving=direction)  # a power cut from here on leaves the position unknown, not wrong
        Actuator._on(self, direction)
        self._report(True)  # reported again and again while it moves

    def _report(self, live):
        try:
            from agent.state import changed  # loaded while there is something to send
        except ImportError:  # an agent older than STATE reports
            return
        changed(NAME, self.position, live)  # its STATE is what the position command answers

    def _settle(self, motion, end):
        """The motor stopped: account for the time it ran (once, whoever stops it first); `end` when a run
        to an end stop went its full length (travel and over-run), whatever the count says."""
        self._pos = end if end is not None else self._after(motion[0], ticks_diff(self._off_at, motion[1]))
        self._motion = None
        self._save()
        self._report(False)

    def _position(self):
        pos = self._pos
        return None if pos is None else int(pos + 0.5)

    # -- commands --------------------------------------------------------------------------------------

    async def move(self, direction, seconds):
        if direction not in self._pins:
            raise ValueError("direction must be up or down")
        if not 0 < seconds * 1000 <= self._max_ms:
            raise ValueError("seconds must be in (0, %s]" % (self._max_ms / 1000))
        run = self.replace()
        async with self._lock:  # the previous move has switched its pin off when we get here
            return await self._move(run, direction, int(seconds * 1000))

    async def goto(self, position):
        if not 0 <= position <= 100:
            raise ValueError("position must be 0..100")
        run = self.replace()
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
        return await self._move(run, direction, ms, end)

    async def calibrate(self, up_s=None, down_s=None):
        if up_s is not None or down_s is not None:
            run = self.replace()
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
        run = self.replace()
        async with self._lock:
            self._pos = None
            return await self._goto(run, 100)

    async def position(self):
        motion = self._motion
        pos = self._now()
        return {"position": None if pos is None else int(pos + 0.5), "moving": None if motion is None else motion[0]}

    async def _move(self, run, direction, ms, end=None):
        result = {
            "direction": direction,
            "seconds": ms / 1000,
            "ran_ms": 0,
            "stopped": "replaced",
            "position": self._position(),
        }
        await self._drive(run, direction, ms, result, end)
        result["position"] = self._position()
        return result

    async def stop(self):
        return {"was_moving": await Actuator.stop(self)}


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    blind = Blind(cfg)
    blind.off()
    return blind


def stop(blind):
    """Agent shutdown: motor off now (the running move's task may never run again), position kept."""
    blind.off()
    motion = blind._motion
    if motion is not None:
        blind._off_at = ticks_ms()
        blind._settle(motion, None)
