"""Bosch BME280 on I2C: temperature, pressure and humidity, compensated on the board.

Layer: role module (runs on the board, loaded by agent/caps.py). It only reads; it must not talk to the
network or drive outputs.

Each read is one forced measurement (oversampling x1 for all three, the datasheet's "weather monitoring"
setting: the chip sleeps in between and draws almost nothing), about 10 ms spent in the event loop, then
one burst read of the 8 data registers into a buffer reserved at setup. The raw values are compensated with
the chip's own trimming constants by the datasheet's integer formulas (BME280 datasheet, 4.2.3 and 8.2:
32-bit temperature and humidity, 64-bit pressure; MicroPython's big integers keep the 64-bit arithmetic).
The trimming constants are read once, at the first read or selftest (so a board whose sensor is plugged in
later, or answers late after power-on, still sets up), and again after a failed transfer.
"""

from agent.port import const, sleep_ms
from machine import I2C, Pin, SoftI2C

NAME = "bme280"
VERSION = "1"
COMMANDS = {"read": {}}
CONFIG = {
    "sda": {"type": "integer", "pin": "out", "required": False, "default": 21},
    "scl": {"type": "integer", "pin": "out", "required": False, "default": 22},
    "address": {"type": "enum", "values": [118, 119], "required": False, "default": 118},
    "bus": {"type": "integer", "min": 0, "max": 1, "required": False, "default": 0},
    "soft": {"type": "boolean", "required": False, "default": False},
    "freq": {"type": "integer", "min": 10000, "max": 400000, "unit": "Hz", "required": False, "default": 100000},
    "telemetry_s": {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0},
}
TELEMETRY = {
    "celsius": {"type": "number", "unit": "°C"},
    "hpa": {"type": "number", "unit": "hPa"},
    "humidity": {"type": "number", "unit": "%"},
}

_CHIP_ID = const(0x60)
_REG_ID = const(0xD0)
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_DATA = const(0xF7)
_MEASURING = const(0x08)
_MEASURE_MS = const(10)  # 1.25 + 2.3 + 2.875 + 2.875 ms at x1 oversampling, rounded up
_HUM_X1 = b"\x01"  # ctrl_hum: humidity x1 (only takes effect with the next write of ctrl_meas)
_FORCED_X1 = b"\x25"  # ctrl_meas: temperature x1, pressure x1, forced mode


def _get(cfg, key):
    return cfg.get(key, CONFIG[key].get("default"))


def _u16(b, i):
    return b[i] | b[i + 1] << 8


def _s16(b, i):
    v = b[i] | b[i + 1] << 8
    return v - 65536 if v & 0x8000 else v


class BME280:
    def __init__(self, cfg):
        sda = Pin(_get(cfg, "sda"))
        scl = Pin(_get(cfg, "scl"))
        freq = _get(cfg, "freq")
        if _get(cfg, "soft"):
            self._i2c = SoftI2C(scl=scl, sda=sda, freq=freq)
        else:
            self._i2c = I2C(_get(cfg, "bus"), scl=scl, sda=sda, freq=freq)
        self._addr = _get(cfg, "address")
        if self._addr not in (0x76, 0x77):
            raise ValueError("a BME280 answers at 0x76 or 0x77")
        self._raw = bytearray(8)
        self._one = bytearray(1)
        self._cal = None

    def chip_id(self):
        self._i2c.readfrom_mem_into(self._addr, _REG_ID, self._one)
        return self._one[0]

    def calibrate(self):
        """Check the chip id and read the trimming constants (datasheet table 16)."""
        chip = self.chip_id()
        if chip != _CHIP_ID:
            raise OSError("chip id 0x%02x at 0x%02x is not a BME280 (0x60)" % (chip, self._addr))
        b = self._i2c.readfrom_mem(self._addr, 0x88, 26)
        h = self._i2c.readfrom_mem(self._addr, 0xE1, 7)
        e4 = h[3] - 256 if h[3] & 0x80 else h[3]  # H4 and H5 are signed 12-bit, split over 0xE4..0xE6
        e6 = h[5] - 256 if h[5] & 0x80 else h[5]
        self._cal = (
            _u16(b, 0),
            _s16(b, 2),
            _s16(b, 4),  # T1..T3
            _u16(b, 6),
            _s16(b, 8),
            _s16(b, 10),
            _s16(b, 12),
            _s16(b, 14),  # P1..P5
            _s16(b, 16),
            _s16(b, 18),
            _s16(b, 20),
            _s16(b, 22),  # P6..P9
            b[25],
            _s16(h, 0),
            h[2],
            e4 << 4 | h[4] & 0x0F,
            e6 << 4 | h[4] >> 4,  # H1..H5
            h[6] - 256 if h[6] & 0x80 else h[6],  # H6
        )

    async def read(self):
        try:
            if self._cal is None:
                self.calibrate()
            i2c, addr = self._i2c, self._addr
            i2c.writeto_mem(addr, _REG_CTRL_HUM, _HUM_X1)
            i2c.writeto_mem(addr, _REG_CTRL_MEAS, _FORCED_X1)
            await sleep_ms(_MEASURE_MS)
            for _ in range(5):  # a chip running slow: a few more ms, then give up
                i2c.readfrom_mem_into(addr, _REG_STATUS, self._one)
                if not self._one[0] & _MEASURING:
                    break
                await sleep_ms(2)
            else:
                raise OSError("BME280 measurement did not finish")
            i2c.readfrom_mem_into(addr, _REG_DATA, self._raw)
        except OSError:
            self._cal = None  # read the constants again next time (the chip may have been replaced)
            raise
        r = self._raw
        t_fine, centi = self._temperature(r[3] << 12 | r[4] << 4 | r[5] >> 4)
        pa256 = self._pressure(r[0] << 12 | r[1] << 4 | r[2] >> 4, t_fine)
        h1024 = self._humidity(r[6] << 8 | r[7], t_fine)
        return {"celsius": centi / 100, "hpa": round(pa256 / 25600, 2), "humidity": round(h1024 / 1024, 1)}

    # -- the datasheet's integer compensation ---------------------------------------------------------

    def _temperature(self, adc):
        t1, t2, t3 = self._cal[0:3]
        var1 = (((adc >> 3) - (t1 << 1)) * t2) >> 11
        var2 = (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3) >> 14
        t_fine = var1 + var2
        return t_fine, (t_fine * 5 + 128) >> 8  # 0.01 °C

    def _pressure(self, adc, t_fine):
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self._cal[3:12]
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * p1) >> 33
        if var1 == 0:
            return 0  # avoids a division by zero (the datasheet's own guard)
        p = 1048576 - adc
        num = ((p << 31) - var2) * 3125
        p = num // var1 if num >= 0 else -(-num // var1)  # C's division truncates toward zero
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (p7 << 4)  # Pa in Q24.8

    def _humidity(self, adc, t_fine):
        h1, h2, h3, h4, h5, h6 = self._cal[12:18]
        v = t_fine - 76800
        v = ((((adc << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
            ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
        )
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
        v = min(max(v, 0), 419430400)
        return v >> 12  # %RH in Q22.10


def setup(cfg):
    from agent.pins import check_config  # setup only: check_config forgets the module again

    check_config(cfg, CONFIG)
    return BME280(cfg)


def selftest(sensor):
    """The chip answers and is a BME280 (chip id register 0xD0 = 0x60); reads its trimming constants."""
    sensor.calibrate()
