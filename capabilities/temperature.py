"""Analog temperature sensor (TMP36) on an ADC pin: °C = (mV − 500) / 10.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.
"""

from machine import ADC, Pin

NAME = "temperature"
VERSION = "2"
COMMANDS = {"read": {}}
CONFIG = {
    "pin": {"type": "integer", "min": 32, "max": 39},
    "telemetry_s": {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0},
}
TELEMETRY = {"celsius": {"type": "number", "unit": "°C"}}


class Temperature:
    def __init__(self, cfg):
        number = cfg["pin"]
        # ADC2 (the other analog pins) cannot be read while Wi-Fi is on
        if not 32 <= number <= 39:
            raise ValueError("GPIO %s is not an ADC1 pin (32-39)" % number)
        # 11 dB attenuation: the ESP32 ADC then covers about 0.15–2.45 V, the TMP36's whole range.
        self._adc = ADC(Pin(number), atten=ADC.ATTN_11DB)

    async def read(self):
        millivolts = self._adc.read_uv() / 1000
        return {"celsius": round((millivolts - 500) / 10, 1)}


def setup(cfg):
    return Temperature(cfg)
