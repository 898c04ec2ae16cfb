"""DC motor on an H-bridge: forward and reverse outputs, optional PWM speed, run for a time the board enforces.

Layer: role module (runs on the board, loaded by agent/caps.py). It must not talk to the network.

Safety as for the blind: outputs off at setup and stop; `fwd_pin` and `rev_pin` are never on together (a
bridge with both high shorts its supply); reversing waits `dead_time_ms` after the motor stopped; every run
ends by the board's own timer and none is longer than `max_seconds`; a new run or stop ends the running one.
With `pwm_pin` (the bridge's enable input, e.g. ENA of an L298N) the speed is a PWM duty cycle, switched
on after the direction pin and off before it, so the bridge never switches direction under power; without
it the motor only runs at full speed and a lower speed is refused.
"""

import asyncio

from agent.port import const, ticks_diff, ticks_ms, wait_for_ms
from machine import PWM, Pin

NAME = "motor"
VERSION = "1"
COMMANDS = {
    "run": {
        "direction": {"type": "enum", "values": ["fwd", "rev"]},
        "seconds": {"type": "number", "min": 0.1, "max": 600, "unit": "s"},
        "speed": {"type": "number", "min": 0, "max": 100, "unit": "%", "required": False},
    },
    "stop": {},
}
CONFIG = {
    "fwd_pin": {"type": "integer", "min": 0, "max": 33},
    "rev_pin": {"type": "integer", "min": 0, "max": 33},
    "pwm_pin": {"type": "integer", "min": 0, "max": 33, "required": False},
    "pwm_hz": {"type": "integer", "min": 100, "max": 40000, "unit": "Hz", "required": False, "default": 1000},
    "dead_time_ms": {"type": "integer", "min": 100, "max": 10000, "unit": "ms", "required": False, "default": 500},
    "max_seconds": {"type": "number", "min": 1, "max": 600, "unit": "s", "required": False, "default": 60},
}

_MIN_DEAD_MS = const(100)
_FULL = const(65535)


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


def _output_pin(number):
    # GPIO 6-11 drive the SPI flash, 34-39 are input-only
    if not 0 <= number <= 33 or 6 <= number <= 11:
        raise ValueError("GPIO %s cannot drive a motor" % number)
    return Pin(number, Pin.OUT, value=0)


class _Run:
    __slots__ = ("wake", "reason")

    def __init__(self):
        self.wake = asyncio.Event()
        self.reason = None

    def end(self, reason):
        if self.reason is None:
            self.reason = reason
            self.wake.set()


class Motor:
    def __init__(self, cfg):
        numbers = [cfg["fwd_pin"], cfg["rev_pin"]]
        pwm_pin = cfg.get("pwm_pin")
        if pwm_pin is not None:
            numbers.append(pwm_pin)
        if len(set(numbers)) != len(numbers):
            raise ValueError("fwd_pin, rev_pin and pwm_pin must differ")
        self._pins = {"fwd": _output_pin(cfg["fwd_pin"]), "rev": _output_pin(cfg["rev_pin"])}
        self._pwm = None
        if pwm_pin is not None:
            self._pwm = PWM(_output_pin(pwm_pin), freq=int(_get(cfg, "pwm_hz")), duty_u16=0)
        self._dead_ms = int(_get(cfg, "dead_time_ms"))
        if self._dead_ms < _MIN_DEAD_MS:
            raise ValueError("dead_time_ms below %d is unsafe for a reversing motor" % _MIN_DEAD_MS)
        self._max_ms = int(_get(cfg, "max_seconds") * 1000)
        self._lock = asyncio.Lock()
        self._run = None
        self._last_dir = None
        self._off_at = ticks_ms()

    def off(self):
        if self._pwm is not None:
            self._pwm.duty_u16(0)  # power off first, then the direction
        self._pins["fwd"].off()
        self._pins["rev"].off()

    async def run(self, direction, seconds, speed=100):
        if direction not in self._pins:
            raise ValueError("direction must be fwd or rev")
        if not 0 < seconds * 1000 <= self._max_ms:
            raise ValueError("seconds must be in (0, %s]" % (self._max_ms / 1000))
        if not 0 <= speed <= 100:
            raise ValueError("speed must be 0..100")
        if self._pwm is None and speed != 100:
            raise ValueError("no pwm_pin configured: the motor runs at full speed only")
        run = _Run()
        previous, self._run = self._run, run
        if previous is not None:
            previous.end("replaced")
        async with self._lock:
            return await self._drive(run, direction, int(seconds * 1000), speed)

    async def _drive(self, run, direction, ms, speed):
        pin = self._pins[direction]
        other = self._pins["rev" if direction == "fwd" else "fwd"]
        result = {"direction": direction, "speed": speed, "ran_ms": 0, "stopped": "replaced"}
        if other.value():
            self.off()
            self._off_at = ticks_ms()
        if self._last_dir != direction:  # None after boot: the motor may have run either way
            wait = self._dead_ms - ticks_diff(ticks_ms(), self._off_at)
            if wait > 0 and await self._sleep_unless_ended(run, wait):
                result["stopped"] = run.reason
                return result
        if run.reason is not None:
            result["stopped"] = run.reason
            return result
        pin.on()
        if self._pwm is not None:
            self._pwm.duty_u16(int(_FULL * speed / 100))
        started = ticks_ms()
        self._last_dir = direction
        try:
            ended_early = await self._sleep_unless_ended(run, ms)
        finally:
            self.off()
            self._off_at = ticks_ms()
        result["ran_ms"] = ticks_diff(self._off_at, started)
        result["stopped"] = run.reason if ended_early else "elapsed"
        if self._run is run:
            self._run = None
        return result

    async def _sleep_unless_ended(self, run, ms):
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
        async with self._lock:
            self.off()
        return {"was_running": moving}


def setup(cfg):
    motor = Motor(cfg)
    motor.off()
    return motor


def stop(motor):
    motor.off()
