"""DC motor on an H-bridge: forward and reverse outputs, optional PWM speed, run for a time the board enforces.

Layer: role module (runs on the board, loaded by agent/caps.py). It must not talk to the network.

Safety as for the blind: outputs off at setup and stop; `fwd_pin` and `rev_pin` are never on together (a
bridge with both high shorts its supply); reversing waits `dead_time_ms` after the motor stopped; every run
ends by the board's own timer and none is longer than `max_seconds`; a new run or stop ends the running one.
With `pwm_pin` (the bridge's enable input, e.g. ENA of an L298N) the speed is a PWM duty cycle, switched
on after the direction pin and off before it, so the bridge never switches direction under power; without
it the motor only runs at full speed and a lower speed is refused. The timing and the interlock are the
blind's, from agent/actuator.py. stop() (a role switch, the module being replaced) gives the PWM channel back:
an ESP32 has 16, and channels kept across switches run out.
"""

from agent.actuator import Actuator
from agent.port import const
from machine import PWM, Pin

NAME = "motor"
VERSION = "2"
COMMANDS = {
    "run": {
        "direction": {"type": "enum", "values": ["fwd", "rev"]},
        "seconds": {"type": "number", "min": 0.1, "max": 600, "unit": "s"},
        "speed": {"type": "number", "min": 0, "max": 100, "unit": "%", "required": False},
    },
    "stop": {},
}
CONFIG = {
    "fwd_pin": {"type": "integer", "pin": "out"},
    "rev_pin": {"type": "integer", "pin": "out"},
    "pwm_pin": {"type": "integer", "pin": "out", "required": False},
    "pwm_hz": {"type": "integer", "min": 100, "max": 40000, "unit": "Hz", "required": False, "default": 1000},
    "dead_time_ms": {"type": "integer", "min": 100, "max": 10000, "unit": "ms", "required": False, "default": 500},
    "max_seconds": {"type": "number", "min": 1, "max": 600, "unit": "s", "required": False, "default": 60},
}

_FULL = const(65535)


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


def _output_pin(number):
    return Pin(number, Pin.OUT, value=0)


class Motor(Actuator):
    def __init__(self, cfg):
        numbers = [cfg["fwd_pin"], cfg["rev_pin"]]
        pwm_pin = cfg.get("pwm_pin")
        if pwm_pin is not None:
            numbers.append(pwm_pin)
        if len(set(numbers)) != len(numbers):
            raise ValueError("fwd_pin, rev_pin and pwm_pin must differ")
        pins = {"fwd": _output_pin(cfg["fwd_pin"]), "rev": _output_pin(cfg["rev_pin"])}
        Actuator.__init__(self, pins, int(_get(cfg, "dead_time_ms")), int(_get(cfg, "max_seconds") * 1000))
        self._duty = 0
        self._pwm = None
        if pwm_pin is not None:  # last: nothing after it may fail and leave its PWM channel claimed
            self._pwm = PWM(_output_pin(pwm_pin), freq=int(_get(cfg, "pwm_hz")), duty_u16=0)

    def off(self):
        if self._pwm is not None:
            self._pwm.duty_u16(0)  # power off first, then the direction
        Actuator.off(self)

    def _on(self, direction):
        Actuator._on(self, direction)
        if self._pwm is not None:
            self._pwm.duty_u16(self._duty)

    def release(self):
        """Off, and the PWM channel given back: the ESP32 has 16, and a role switch must not keep this one."""
        self.off()
        pwm, self._pwm = self._pwm, None
        if pwm is not None:
            pwm.deinit()

    async def run(self, direction, seconds, speed=100):
        if direction not in self._pins:
            raise ValueError("direction must be fwd or rev")
        if not 0 < seconds * 1000 <= self._max_ms:
            raise ValueError("seconds must be in (0, %s]" % (self._max_ms / 1000))
        if not 0 <= speed <= 100:
            raise ValueError("speed must be 0..100")
        if self._pwm is None and speed != 100:
            raise ValueError("no pwm_pin configured: the motor runs at full speed only")
        run = self.replace()
        async with self._lock:
            self._duty = int(_FULL * speed / 100)
            result = {"direction": direction, "speed": speed, "ran_ms": 0, "stopped": "replaced"}
            return await self._drive(run, direction, int(seconds * 1000), result)

    async def stop(self):
        return {"was_running": await Actuator.stop(self)}


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    motor = Motor(cfg)
    motor.off()
    return motor


def stop(motor):
    """Agent shutdown or the module being replaced: off, and its PWM channel released."""
    motor.release()
