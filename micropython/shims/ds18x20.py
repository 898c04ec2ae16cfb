"""`ds18x20` for the virtual ESP32: the public API of MicroPython's frozen DS18x20 driver.

Layer: unix-port shim (never copied to a board). Written from the driver's documented API and the DS18B20
datasheet; it talks to the sensors only through the onewire bus (the onewire shim models them), as the real
driver does, so a module that reads before a conversion has finished gets what a real sensor would give.
"""

_CONVERT = 0x44
_RD_SCRATCH = 0xBE
_WR_SCRATCH = 0x4E


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire
        self.buf = bytearray(9)

    def scan(self):
        """ROMs of the DS18S20 (0x10), DS1822 (0x22) and DS18B20 (0x28) sensors on the bus."""
        return [rom for rom in self.ow.scan() if rom[0] in (0x10, 0x22, 0x28)]

    def convert_temp(self):
        """Start a conversion in every sensor at once; the caller waits (750 ms at 12 bits)."""
        self.ow.reset(True)
        self.ow.writebyte(self.ow.SKIP_ROM)
        self.ow.writebyte(_CONVERT)

    def read_scratch(self, rom):
        self.ow.reset(True)
        self.ow.select_rom(rom)
        self.ow.writebyte(_RD_SCRATCH)
        self.ow.readinto(self.buf)
        if self.ow.crc8(self.buf):
            raise Exception("CRC error")
        return self.buf

    def write_scratch(self, rom, buf):
        self.ow.reset(True)
        self.ow.select_rom(rom)
        self.ow.writebyte(_WR_SCRATCH)
        self.ow.write(buf)

    def read_temp(self, rom):
        buf = self.read_scratch(rom)
        if rom[0] == 0x10:  # DS18S20: 0.5 °C steps, refined by COUNT_REMAIN / COUNT_PER_C
            raw = buf[0] - 256 if buf[1] else buf[0]
            return raw // 2 - 0.25 + (buf[7] - buf[6]) / buf[7]
        raw = buf[1] << 8 | buf[0]
        if raw & 0x8000:
            raw -= 0x10000
        return raw / 16
