"""Push button (or any contact: a door switch, a float switch) on an input pin, debounced.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network itself (its events go out through the agent's emit) or drive outputs.

run(emit) polls the pin every `poll_ms` (polling rather than an IRQ: a bouncing contact fires dozens of
interrupts per press, and the level is what matters); a new level counts once it has held for `debounce_ms`,
so a bounce or a spike shorter than that gives no event. Each debounced change emits {"pressed": bool,
"count": n} (n counts presses since boot, so the master can tell it missed an event). With `active_low` (the
usual wiring: the contact pulls the pin to ground against the pull-up) a low level is "pressed".
"""

from agent.port import sleep_ms, ticks_diff, ticks_ms
from machine import Pin

NAME = "button"
VERSION = "1"
COMMANDS = {"state": {}}
CONFIG = {
    "pin": {"type": "integer", "pin": "in"},
    "pull": {"type": "enum", "values": ["up", "down", "none"], "required": False, "default": "up"},
    "active_low": {"type": "boolean", "required": False, "default": True},
    "debounce_ms": {"type": "integer", "min": 5, "max": 2000, "unit": "ms", "required": False, "default": 50},
    "poll_ms": {"type": "integer", "min": 2, "max": 200, "unit": "ms", "required": False, "default": 10},
}
TELEMETRY = {
    "pressed": {"type": "boolean"},
    "count": {"type": "integer"},
}

_PULLS = {"up": Pin.PULL_UP, "down": Pin.PULL_DOWN, "none": None}


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


class Button:
    def __init__(self, cfg):
        number = cfg["pin"]
        pull = _get(cfg, "pull")
        if pull not in _PULLS:
            raise ValueError("pull must be up, down or none")
        self._pin = Pin(number, Pin.IN, _PULLS[pull])
        self._active = 0 if _get(cfg, "active_low") else 1
        self._debounce_ms = int(_get(cfg, "debounce_ms"))
        self._poll_ms = int(_get(cfg, "poll_ms"))
        self._pressed = self._pin.value() == self._active  # the level at boot counts as settled
        self.count = 0
        self._running = False  # run() keeps _pressed current; without it, state() samples the pin

    def _sample(self):
        return self._pin.value() == self._active

    async def run(self, emit):
        candidate = self._pressed = self._sample()
        since = ticks_ms()
        self._running = True
        try:
            await self._poll(emit, candidate, since)
        finally:
            self._running = False

    async def _poll(self, emit, candidate, since):
        while True:
            await sleep_ms(self._poll_ms)
            level = self._sample()
            now = ticks_ms()
            if level != candidate:
                candidate = level  # a change starts the clock; a bounce back resets it
                since = now
            # a negative span (ticks_diff wraps after ~6.2 days on an ESP32) is long held, not a bounce
            elif level != self._pressed and not 0 <= ticks_diff(now, since) < self._debounce_ms:
                self._pressed = level
                if level:
                    self.count += 1
                emit({"pressed": level, "count": self.count})

    async def state(self):
        pressed = self._pressed if self._running else self._sample()
        return {"pressed": pressed, "count": self.count, "level": self._pin.value()}


def setup(cfg):
    from agent.pins import check_config, problem  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    if _get(cfg, "pull") != "none" and problem(cfg["pin"], "out"):  # input-only (ESP32 GPIO 34-39): no pulls
        raise ValueError("GPIO %s has no internal pull resistors: use pull none and an external one" % cfg["pin"])
    return Button(cfg)
