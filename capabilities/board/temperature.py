"""Analog temperature sensor (TMP36) on an ADC pin: °C = (mV − 500) / 10.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.

Single ESP32 ADC readings are noisy (tens of mV, i.e. several °C here): a read averages `samples` readings.
"""

from machine import ADC, Pin

NAME = "temperature"
VERSION = "3"
COMMANDS = {"read": {}}
CONFIG = {
    "pin": {"type": "integer", "pin": "adc"},
    "samples": {"type": "integer", "min": 1, "max": 64, "required": False, "default": 16},
    "telemetry_s": {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0},
}
TELEMETRY = {"celsius": {"type": "number", "unit": "°C"}}


class Temperature:
    def __init__(self, cfg):
        # ADC1 only: ADC2 (the other analog pins) cannot be read while Wi-Fi is on
        number = cfg["pin"]
        self._samples = int(cfg.get("samples", 16))
        if not 1 <= self._samples <= 64:
            raise ValueError("samples must be 1..64")
        # 11 dB attenuation: calibrated from about 0.15 to 2.45 V on an ESP32, the TMP36's whole range
        # (0.1 V at -40 °C to 1.75 V at 125 °C).
        self._adc = ADC(Pin(number), atten=ADC.ATTN_11DB)

    async def read(self):
        total = 0
        for _ in range(self._samples):
            total += self._adc.read_uv()
        return {"celsius": round((total / self._samples / 1000 - 500) / 10, 1)}


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    return Temperature(cfg)
