"""Relay: one output switched on, off, toggled, or pulsed for a time the board enforces.

Layer: role module (runs on the board, loaded by agent/caps.py). It must not talk to the network: its STATE
(on, pulsing) goes to the master through the agent (agent/state.py) whenever the output changes.

The relay has a steady state (what on/off/toggle set) and may be in a pulse: `pulse` flips it away from the
steady state for `seconds`, then the board's own timer puts it back, master or not (a momentary contact for
a gate opener when the relay rests off; a power cycle for a router when it rests on). Any new command ends a
running pulse: on/off/toggle set the steady state, a new pulse starts its time afresh.

`inverted` relays (active low: the common opto-coupled modules) are on when the pin is low. Note that boot.py
drives every *_pin low at power-on, which switches such a relay ON until setup() has run; wire an active-low
relay only where a moment on at boot is harmless (or use one that is active high).

`restore` says what the relay does at boot: off, on, or "last", the steady state before the reset, kept in
state_relay.json (written only when that state changes, and only with restore = "last": flash wears).
"""

import asyncio
import json
import os

from agent.port import sleep_ms
from machine import Pin

NAME = "relay"
VERSION = "1"
COMMANDS = {
    "on": {},
    "off": {},
    "toggle": {},
    "pulse": {"seconds": {"type": "number", "min": 0.05, "max": 86400, "unit": "s"}},
    "state": {},
}
STATE = {"on": {"type": "boolean"}, "pulsing": {"type": "boolean"}}
CONFIG = {
    "out_pin": {"type": "integer", "pin": "out"},
    "inverted": {"type": "boolean", "required": False, "default": False},
    "restore": {"type": "enum", "values": ["off", "on", "last"], "required": False, "default": "off"},
}

_STATE = "state_relay.json"


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


class Relay:
    def __init__(self, cfg):
        number = cfg["out_pin"]
        self._inverted = bool(_get(cfg, "inverted"))
        self._restore = _get(cfg, "restore")
        if self._restore not in ("off", "on", "last"):
            raise ValueError("restore must be off, on or last")
        # off at once, in the constructor, before anything else can happen
        self._pin = Pin(number, Pin.OUT, value=1 if self._inverted else 0)
        self._steady = False
        self._on = False
        self._pulse = None  # the task that ends the running pulse
        self._pulse_end = 0

    def boot_state(self):
        if self._restore == "on":
            return True
        if self._restore == "last":
            try:
                with open(_STATE) as f:
                    return bool(json.load(f).get("on"))
            except (OSError, ValueError, AttributeError):
                pass  # never saved, or damaged: off is the safe guess
        return False

    def drive(self, on):
        self._on = on
        self._pin.value(on != self._inverted)
        try:
            from agent.state import changed  # loaded while there is something to send
        except ImportError:  # an agent older than STATE reports
            return
        changed(NAME, self.state)  # its STATE is what the state command answers

    def _cancel_pulse(self):
        task, self._pulse = self._pulse, None
        if task is not None:
            task.cancel()

    def _set(self, on):
        self._cancel_pulse()
        changed = on != self._steady
        self._steady = on
        self.drive(on)
        if changed and self._restore == "last":
            try:
                with open(_STATE + ".new", "w") as f:
                    json.dump({"on": on}, f)
                os.rename(_STATE + ".new", _STATE)  # atomic on littlefs
            except OSError as exc:
                print("relay: cannot save the state:", exc)
        return {"on": on}

    async def on(self):
        return self._set(True)

    async def off(self):
        return self._set(False)

    async def toggle(self):
        return self._set(not self._on)

    async def pulse(self, seconds):
        if not 0 < seconds <= 86400:
            raise ValueError("seconds must be in (0, 86400]")
        self._cancel_pulse()
        self.drive(not self._steady)
        self._pulse = asyncio.create_task(self._end_pulse(int(seconds * 1000)))
        return {"on": self._on, "back_in_s": seconds}

    async def _end_pulse(self, ms):
        await sleep_ms(ms)
        self._pulse = None
        self.drive(self._steady)  # not reached when cancelled: the newer command decided the level

    async def state(self):
        return {"on": self._on, "pulsing": self._pulse is not None}


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    relay = Relay(cfg)
    relay.drive(relay.boot_state())
    relay._steady = relay._on
    return relay


def stop(relay):
    """Agent shutdown or the module being replaced: no pulse outlives us, the relay rests off."""
    relay._cancel_pulse()
    relay.drive(False)
