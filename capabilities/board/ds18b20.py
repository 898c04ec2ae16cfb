"""DS18B20 temperature sensors on a 1-Wire bus: every sensor found on `pin`, read together.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.

One conversion for the whole bus (SKIP ROM + CONVERT T, as ds18x20.convert_temp does), then 750 ms of
waiting (12-bit resolution; the sensor's scratchpad holds the previous value until then) spent in the event
loop, not blocking the board, then one scratchpad read per sensor. `celsius` is the first sensor's value (the
one to use with a single sensor); `sensors` maps every sensor's ROM (hex) to its value. A sensor whose read
fails its CRC (a loose wire) is left out; when none answers the read fails. The bus is scanned at setup and
again when a sensor went missing, so a sensor plugged in later is found.
"""

import asyncio

import ds18x20
import onewire
from agent.port import const, sleep_ms
from machine import Pin

NAME = "ds18b20"
VERSION = "1"
COMMANDS = {"read": {}}
CONFIG = {
    "pin": {"type": "integer", "pin": "out"},
    "telemetry_s": {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0},
}
TELEMETRY = {
    "celsius": {"type": "number", "unit": "°C"},
    "sensors": {"type": "object", "unit": "°C"},
}

_CONVERSION_MS = const(750)  # 12-bit conversion, the DS18B20's power-on resolution


class DS18B20:
    def __init__(self, cfg):
        number = cfg["pin"]  # an open-drain output: never an input-only pin ("out" in CONFIG)
        self._sensors = ds18x20.DS18X20(onewire.OneWire(Pin(number)))
        self._lock = asyncio.Lock()  # a telemetry read and a command read share one conversion at a time
        self._roms = []
        self._names = []
        self.scan()

    def scan(self):
        self._roms = self._sensors.scan()
        self._names = ["".join("%02x" % b for b in rom) for rom in self._roms]  # built once, not per read
        return self._roms

    async def read(self):
        async with self._lock:
            if not self._roms and not self.scan():
                raise OSError("no DS18B20 on the bus")
            try:
                self._sensors.convert_temp()
            except onewire.OneWireError:
                raise OSError("no DS18B20 answers on the bus")
            await sleep_ms(_CONVERSION_MS)
            values = {}
            first = None
            for rom, name in zip(self._roms, self._names):
                try:
                    celsius = round(self._sensors.read_temp(rom), 2)
                except Exception:  # noqa: BLE001 — the driver raises a bare Exception("CRC error")
                    continue
                values[name] = celsius
                if first is None:
                    first = celsius
            if len(values) < len(self._roms):
                self._roms = []  # rescan next time: a sensor is gone or a new one came
            if first is None:
                raise OSError("no DS18B20 answered")
            return {"celsius": first, "sensors": values}


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    return DS18B20(cfg)


def selftest(sensor):
    """At least one sensor on the bus."""
    if not sensor.scan():
        raise OSError("no DS18B20 found on the 1-Wire bus")
