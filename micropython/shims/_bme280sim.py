"""A virtual Bosch BME280 on the virtual ESP32's I2C bus (used by the machine shim's I2C and SoftI2C).

Layer: unix-port shim (never copied to a board). A register file like the chip's: chip id 0xD0 = 0x60, soft
reset 0xE0, ctrl_hum 0xF2, status 0xF3, ctrl_meas 0xF4, config 0xF5, raw data 0xF7..0xFE, and calibration
(trimming) constants at 0x88..0xA1 and 0xE1..0xE7.

The calibration constants are fixed: T1..T3 and P1..P9 are the example values printed in Bosch's BMP280
datasheet (section 3.12, whose worked example has adc_T = 519888 -> 25.08 °C and adc_P = 415148 ->
100653.27 Pa), H1..H6 are realistic values read from a BME280. The test sets what the chip should measure
(°C, hPa, %RH in inputs.json {"i2c": {"118": {"chip": "bme280", "celsius": …, "hpa": …, "humidity": …}}}); a
forced measurement turns that into raw ADC values by inverting the datasheet's integer compensation
numerically (bisection: each compensated value is monotonic in its raw value), so a module that applies the
datasheet formulas to the registers gets the set values back to within the formulas' resolution. "raw": {"t",
"p", "h"} sets the ADC values directly (to check a module against the datasheet's own example), "chip_id"
another chip id (a BMP280 has 0x58).

Timing as on the chip: a forced measurement (ctrl_meas mode 01) takes 1.25 + 2.3·osrs_t + (2.3·osrs_p +
0.575) + (2.3·osrs_h + 0.575) ms; meanwhile status bit 3 (measuring) is set and the data registers still hold
the previous results. After power-on or reset they read 0x80000/0x8000 ("skipped").
"""

import time

CAL_T = (27504, 26435, -1000)
CAL_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
CAL_H = (75, 362, 0, 313, 50, 30)  # H1 u8, H2 s16, H3 u8, H4 s12, H5 s12, H6 s8

_OVERSAMPLING = (0, 1, 2, 4, 8, 16, 16, 16)


def _now_ms():
    return time.time_ns() / 1000000


def t_fine_of(adc_t):
    t1, t2, t3 = CAL_T
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    return var1 + var2


def pressure_q24_8(adc_p, t_fine):
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = CAL_P
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (p7 << 4)


def _cdiv(a, b):
    """C's integer division (truncates toward zero), which the datasheet's code uses."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def humidity_q22_10(adc_h, t_fine):
    h1, h2, h3, h4, h5, h6 = CAL_H
    v = t_fine - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


def _bisect(f, target, low, high, increasing=True):
    """The x in [low, high] whose f(x) is closest to target, f monotonic."""
    while high - low > 1:
        mid = (low + high) // 2
        if (f(mid) < target) == increasing:
            low = mid
        else:
            high = mid
    return low if abs(f(low) - target) <= abs(f(high) - target) else high


def raw_for(celsius, hpa, humidity):
    """(adc_t, adc_p, adc_h) that the datasheet compensation turns into these values."""
    adc_t = _bisect(lambda x: (t_fine_of(x) * 5 + 128) >> 8, round(celsius * 100), 0, (1 << 20) - 1)
    t_fine = t_fine_of(adc_t)
    adc_p = _bisect(lambda x: pressure_q24_8(x, t_fine), round(hpa * 100 * 256), 0, (1 << 20) - 1, False)
    adc_h = _bisect(lambda x: humidity_q22_10(x, t_fine), round(humidity * 1024), 0, 0xFFFF)
    return adc_t, adc_p, adc_h


def _calibration_block():
    regs = {}

    def put(addr, value, size=2):
        for i in range(size):
            regs[addr + i] = (value >> (8 * i)) & 0xFF

    for i, value in enumerate(CAL_T + CAL_P):
        put(0x88 + 2 * i, value)
    h1, h2, h3, h4, h5, h6 = CAL_H
    regs[0xA1] = h1
    put(0xE1, h2)
    regs[0xE3] = h3
    regs[0xE4] = (h4 >> 4) & 0xFF
    regs[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
    regs[0xE6] = (h5 >> 4) & 0xFF
    regs[0xE7] = h6 & 0xFF
    return regs


class BME280:
    """One chip's registers; `inputs` is a callable giving the entry of inputs.json at measurement time."""

    def __init__(self, inputs):
        self._inputs = inputs
        self._regs = bytearray(256)
        self.reset()

    def reset(self):
        regs = self._regs
        for i in range(256):
            regs[i] = 0
        for addr, value in _calibration_block().items():
            regs[addr] = value
        regs[0xF7:0xFF] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
        self._pending = None  # (done_at_ms, raw data bytes) of a measurement in progress

    def _settle(self):
        if self._pending is not None and _now_ms() >= self._pending[0]:
            self._regs[0xF7:0xFF] = self._pending[1]
            self._pending = None
            self._regs[0xF4] &= 0xFC  # back to sleep mode after a forced measurement

    def read(self, reg, n):
        self._settle()
        entry = self._inputs() or {}
        out = bytearray(n)
        for i in range(n):
            addr = (reg + i) & 0xFF
            if addr == 0xD0:
                out[i] = entry.get("chip_id", 0x60)
            elif addr == 0xF3:
                out[i] = 0x08 if self._pending is not None else 0
            else:
                out[i] = self._regs[addr]
        return bytes(out)

    def write(self, reg, data):
        self._settle()
        for i, value in enumerate(data):
            addr = (reg + i) & 0xFF
            if addr == 0xE0:
                if value == 0xB6:
                    self.reset()
            elif addr in (0xF2, 0xF5):
                self._regs[addr] = value
            elif addr == 0xF4:
                self._regs[addr] = value
                if value & 0x03 in (1, 2):
                    self._measure(value)

    def _measure(self, ctrl_meas):
        entry = self._inputs() or {}
        raw = entry.get("raw")
        if raw:
            adc_t, adc_p, adc_h = raw["t"], raw["p"], raw["h"]
        else:
            adc_t, adc_p, adc_h = raw_for(
                entry.get("celsius", 20.0), entry.get("hpa", 1013.25), entry.get("humidity", 50.0)
            )
        osrs_t = _OVERSAMPLING[(ctrl_meas >> 5) & 7]
        osrs_p = _OVERSAMPLING[(ctrl_meas >> 2) & 7]
        osrs_h = _OVERSAMPLING[self._regs[0xF2] & 7]
        duration = (
            1.25 + 2.3 * osrs_t + (2.3 * osrs_p + 0.575 if osrs_p else 0) + (2.3 * osrs_h + 0.575 if osrs_h else 0)
        )
        data = bytes(
            [
                adc_p >> 12 & 0xFF,
                adc_p >> 4 & 0xFF,
                (adc_p & 0x0F) << 4,
                adc_t >> 12 & 0xFF,
                adc_t >> 4 & 0xFF,
                (adc_t & 0x0F) << 4,
                adc_h >> 8 & 0xFF,
                adc_h & 0xFF,
            ]
        )
        # a measurement skipped by osrs = 0 leaves the "skipped" value
        if not osrs_p:
            data = bytes([0x80, 0, 0]) + data[3:]
        if not osrs_h:
            data = data[:6] + bytes([0x80, 0])
        self._pending = (_now_ms() + duration, data)
