"""`dht` for the virtual ESP32: the public API of MicroPython's frozen dht driver (DHT11, DHT22).

Layer: unix-port shim (never copied to a board). measure() reads inputs.json {"dht": {"PIN": {"celsius": …,
"humidity": …}}} and puts it into the 5 bytes the sensor would send (tenths, sign bit, checksum), which
temperature()/humidity() decode as the real driver does. Like a real sensor:
- no entry, null, or {"absent": true}: the sensor does not answer: OSError(ETIMEDOUT), as dht_readinto raises;
- {"corrupt": true}: a transfer with a wrong checksum: Exception("checksum error");
- a DHT22 asked again less than 2 s after its last measurement does not answer (OSError(ETIMEDOUT)); a
  DHT11, less than 1 s after.
"""

import errno
import time

import _simio

_last_ms = {}  # pin id -> when its sensor last measured (wall clock, ms)


class DHTBase:
    _MIN_INTERVAL_MS = 2000

    def __init__(self, pin):
        self.pin = pin
        self.buf = bytearray(5)

    def measure(self):
        pin_id = self.pin.id
        now = time.time_ns() // 1000000
        values = _simio.read_input("dht", pin_id, None)
        last = _last_ms.get(pin_id)
        if not values or values.get("absent") or (last is not None and now - last < self._MIN_INTERVAL_MS):
            raise OSError(errno.ETIMEDOUT)
        _last_ms[pin_id] = now
        self._encode(values["celsius"], values["humidity"])
        buf = self.buf
        if values.get("corrupt"):
            buf[4] ^= 0x55
        if (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF != buf[4]:
            raise Exception("checksum error")


class DHT11(DHTBase):
    _MIN_INTERVAL_MS = 1000

    def _encode(self, celsius, humidity):
        buf = self.buf
        buf[0] = int(humidity) & 0xFF
        buf[1] = 0
        buf[2] = int(celsius) & 0xFF
        buf[3] = int(round((celsius - int(celsius)) * 10)) & 0xFF
        buf[4] = (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF

    def humidity(self):
        return self.buf[0]

    def temperature(self):
        return self.buf[2] + self.buf[3] / 10


class DHT22(DHTBase):
    def _encode(self, celsius, humidity):
        buf = self.buf
        h = int(round(humidity * 10))
        t = int(round(abs(celsius) * 10))
        buf[0] = h >> 8
        buf[1] = h & 0xFF
        buf[2] = (t >> 8) | (0x80 if celsius < 0 else 0)
        buf[3] = t & 0xFF
        buf[4] = (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF

    def humidity(self):
        return (self.buf[0] << 8 | self.buf[1]) * 0.1

    def temperature(self):
        t = ((self.buf[2] & 0x7F) << 8 | self.buf[3]) * 0.1
        if self.buf[2] & 0x80:
            t = -t
        return t
