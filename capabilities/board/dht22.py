"""DHT22 (AM2302) temperature and humidity sensor on one data pin.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.

A DHT22 must not be asked more often than every 2 s (it answers with stale data or not at all): a read within
2 s of the last measurement returns that measurement again, so a telemetry read and a command read may come
as they please. A sensor that does not answer (dht raises OSError ETIMEDOUT) or sends a wrong checksum is
asked once more after 2 s (such glitches are common on long wires) before the read fails.
"""

import dht
from agent.port import const, sleep_ms, ticks_diff, ticks_ms
from machine import Pin

NAME = "dht22"
VERSION = "2"
COMMANDS = {"read": {}}
CONFIG = {
    "pin": {"type": "integer", "pin": "out"},
    "telemetry_s": {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0},
}
TELEMETRY = {
    "celsius": {"type": "number", "unit": "°C"},
    "humidity": {"type": "number", "unit": "%"},
}

_MIN_INTERVAL_MS = const(2000)


class DHT22:
    def __init__(self, cfg):
        number = cfg["pin"]  # driven by both ends: never an input-only pin ("out" in CONFIG)
        self._number = number
        self._sensor = dht.DHT22(Pin(number))
        self._last = None  # the last good reading
        self._at = 0  # ticks_ms of the last measurement (good or not)
        self._asked = False

    def measure(self):
        """Measure now (the caller keeps the 2 s); the reading, or raise what the driver raised."""
        self._at = ticks_ms()
        self._asked = True
        self._last = None  # a failed measurement leaves nothing to repeat
        self._sensor.measure()
        self._last = {"celsius": round(self._sensor.temperature(), 1), "humidity": round(self._sensor.humidity(), 1)}
        return self._last

    def _wait_ms(self):
        if not self._asked:
            return 0
        elapsed = ticks_diff(ticks_ms(), self._at)
        if elapsed < 0:  # ticks_diff wraps after ~6.2 days on an ESP32: that measurement is long ago
            return 0
        return max(0, _MIN_INTERVAL_MS - elapsed)

    async def read(self):
        if self._last is not None and self._wait_ms() > 0:
            return self._last  # measured less than 2 s ago
        await sleep_ms(self._wait_ms())  # a failed attempt was less than 2 s ago
        try:
            return self.measure()
        except Exception:  # noqa: BLE001 — OSError (no answer) or the driver's Exception("checksum error")
            await sleep_ms(_MIN_INTERVAL_MS)
        try:
            return self.measure()
        except OSError:
            raise OSError("DHT22 on GPIO %s does not answer" % self._number)


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    return DHT22(cfg)


def selftest(sensor):
    """The sensor answers once (this is also the first reading)."""
    sensor.measure()
