"""Analog input: an ADC pin scaled linearly into a value with a unit (a pressure transducer, a soil probe …).

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.

value = volts × scale + offset, where volts comes from read_uv() (the ESP32's factory-calibrated reading,
better than scaling the raw count) averaged over `samples` readings, since single ESP32 ADC readings are noisy.
Only ADC1 pins are accepted (ESP32: GPIO 32-39; the chip's list in agent/pins.py): ADC2 cannot be read while
Wi-Fi is on. `atten` sets the range read_uv() is calibrated for (ESP-IDF's figures for the ESP32): 0 dB about
0.10-0.95 V, 2.5 dB 0.10-1.25 V, 6 dB 0.15-1.75 V, 11 dB 0.15-2.45 V. Beyond them a reading is not linear any
more (11 dB saturates near 3.1 V); scale a higher voltage down with a divider.
"""

from machine import ADC, Pin

NAME = "analog"
VERSION = "1"
COMMANDS = {"read": {}}
CONFIG = {
    "pin": {"type": "integer", "pin": "adc"},
    "atten": {"type": "enum", "values": [0, 2.5, 6, 11], "unit": "dB", "required": False, "default": 11},
    "scale": {"type": "number", "required": False, "default": 1.0},
    "offset": {"type": "number", "required": False, "default": 0.0},
    "unit": {"type": "string", "required": False, "default": "V"},
    "decimals": {"type": "integer", "min": 0, "max": 6, "required": False, "default": 3},
    "samples": {"type": "integer", "min": 1, "max": 64, "required": False, "default": 8},
    "telemetry_s": {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0},
}
TELEMETRY = {
    "value": {"type": "number", "unit": "(CONFIG unit)"},
    "uv": {"type": "integer", "unit": "µV"},
}

_ATTEN = {0: ADC.ATTN_0DB, 2.5: ADC.ATTN_2_5DB, 6: ADC.ATTN_6DB, 11: ADC.ATTN_11DB}


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


class Analog:
    def __init__(self, cfg):
        number = cfg["pin"]
        atten = _get(cfg, "atten")
        if atten not in _ATTEN:
            raise ValueError("atten must be 0, 2.5, 6 or 11")
        self._adc = ADC(Pin(number), atten=_ATTEN[atten])
        self._scale = float(_get(cfg, "scale"))
        self._offset = float(_get(cfg, "offset"))
        self._decimals = int(_get(cfg, "decimals"))
        self._samples = int(_get(cfg, "samples"))
        if not 1 <= self._samples <= 64:
            raise ValueError("samples must be 1..64")

    async def read(self):
        total = 0
        for _ in range(self._samples):
            total += self._adc.read_uv()
        uv = total // self._samples
        return {"value": round(uv / 1000000 * self._scale + self._offset, self._decimals), "uv": uv}


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    return Analog(cfg)
