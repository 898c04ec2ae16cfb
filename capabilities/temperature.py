"""Analog temperature sensor (TMP36) on an ADC pin: °C = (mV − 500) / 10.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.
"""

from machine import ADC, Pin

NAME = "temperature"
VERSION = "1"
COMMANDS = {"read": {}}


class Temperature:
    def __init__(self, cfg):
        # 11 dB attenuation: the ESP32 ADC then covers about 0.15–2.45 V, the TMP36's whole range.
        self._adc = ADC(Pin(cfg["pin"]), atten=ADC.ATTN_11DB)

    async def read(self):
        millivolts = self._adc.read_uv() / 1000
        return {"celsius": round((millivolts - 500) / 10, 1)}


def setup(cfg):
    return Temperature(cfg)
