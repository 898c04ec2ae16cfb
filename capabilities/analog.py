"""Analog input: an ADC pin scaled linearly into a value with a unit (a pressure transducer, a soil probe …).

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.

value = volts × scale + offset, where volts comes from read_uv() (the ESP32's factory-calibrated reading,
better than scaling the raw count) averaged over `samples` readings, since single ESP32 ADC readings are noisy.
Only ADC1 pins (GPIO 32-39) are accepted: ADC2 cannot be read while Wi-Fi is on. `atten` sets the range:
0 dB up to about 1.1 V, 2.5 dB 1.5 V, 6 dB 2.2 V, 11 dB 3.1 V.
"""

from machine import ADC, Pin

NAME = "analog"
VERSION = "1"
COMMANDS = {"read": {}}
CONFIG = {
    "pin": {"type": "integer", "min": 32, "max": 39},
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
        if not 32 <= number <= 39:
            raise ValueError("GPIO %s is not an ADC1 pin (32-39); ADC2 does not work with Wi-Fi on" % number)
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
    return Analog(cfg)
