"""`onewire` for the virtual ESP32: the public API of MicroPython's frozen onewire driver, on a virtual bus.

Layer: unix-port shim (never copied to a board). The bus on a pin carries the DS18B20s listed in
inputs.json {"onewire": {"PIN": [celsius or null, ...]}} (re-read at every reset, so a test can change
values, add or unplug sensors while the board runs; null keeps a sensor's place but unplugs it, so the
others keep their ROMs). Each sensor is modelled at the byte level as the datasheet describes it: a reset
and a ROM command (MATCH or SKIP), then a function command: CONVERT T (0x44) measures the input's value,
which reaches the scratchpad only after the conversion time of the configured resolution (750 ms at 12
bits), READ SCRATCHPAD (0xBE) gives 9 bytes with a Dallas CRC8, WRITE SCRATCHPAD (0x4E) takes TH, TL and
the configuration. A sensor that was never converted reads its power-on 85 °C, as a real one does. Several
sensors answering at once (SKIP ROM then a read) pull the line low together: their bytes are ANDed and the
CRC fails. scan() stands in for the bit-level SEARCH ROM and returns the present sensors' ROMs.
"""

import time

import _simio


class OneWireError(Exception):
    pass


def _crc8(data):
    """Dallas/Maxim CRC8 (x^8 + x^5 + x^4 + 1, LSB first); 0 over data that ends with its own CRC."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def _search_key(rom):
    key = bytearray(len(rom))
    for i, byte in enumerate(rom):
        for bit in range(8):  # bit 0 first: reverse the bits of each byte
            if byte & (1 << bit):
                key[i] |= 0x80 >> bit
    return bytes(key)


def _now_ms():
    return time.time_ns() // 1000000


def rom_of(pin, index):
    """The ROM of sensor `index` on the bus of `pin`: family 0x28 (DS18B20), a serial, its CRC."""
    rom = bytearray([0x28, 0x5E, pin & 0xFF, index & 0xFF, 0x1A, 0x03, 0x00, 0])
    rom[7] = _crc8(rom[:7])
    return rom


class _Sensor:
    """One DS18B20's scratchpad and its conversion in progress."""

    _CONVERSION_MS = {0x1F: 94, 0x3F: 188, 0x5F: 375, 0x7F: 750}  # 9..12-bit resolution
    _MASK = {0x1F: ~7, 0x3F: ~3, 0x5F: ~1, 0x7F: ~0}

    def __init__(self):
        # power-on scratchpad: 85 °C (0x0550), TH 75, TL 70, 12 bits
        self.pad = bytearray([0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0])
        self.pad[8] = _crc8(self.pad[:8])
        self.pending = None  # (done_at_ms, raw) of a conversion that has not finished

    def convert(self, celsius):
        config = self.pad[4]
        raw = int(round(celsius * 16)) & self._MASK.get(config, ~0)
        self.pending = (_now_ms() + self._CONVERSION_MS.get(config, 750), raw & 0xFFFF)

    def scratchpad(self):
        if self.pending is not None and _now_ms() >= self.pending[0]:
            raw = self.pending[1]
            self.pad[0] = raw & 0xFF
            self.pad[1] = raw >> 8
            self.pad[8] = _crc8(self.pad[:8])
            self.pending = None
        return self.pad

    def write(self, th, tl, config):
        self.pad[2] = th
        self.pad[3] = tl
        self.pad[4] = (config & 0x60) | 0x1F
        self.pad[8] = _crc8(self.pad[:8])


_sensors = {}  # bytes(rom) -> _Sensor: a sensor keeps its state for as long as the board runs


class OneWire:
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC

    def __init__(self, pin):
        pin.init(pin.OPEN_DRAIN, pin.PULL_UP)  # as the driver does: the line idles high through the pull-up
        self.pin = pin
        self._present = {}  # bytes(rom) -> celsius, as of the last reset
        self._state = "idle"
        self._selected = []
        self._rom = bytearray()
        self._out = b""
        self._args = bytearray()

    # -- the bus, as the driver's callers see it ----------------------------------------------------

    def reset(self, required=False):
        values = _simio.read_input("onewire", self.pin.id, [])
        self._present = {}
        for index, celsius in enumerate(values):
            if celsius is not None:
                self._present[bytes(rom_of(self.pin.id, index))] = celsius
        self._state = "rom"
        self._out = b""
        if required and not self._present:
            raise OneWireError
        return bool(self._present)

    def readbit(self):
        return self.readbyte() & 1

    def readbyte(self):
        if not self._out:
            return 0xFF  # nobody pulls the line low: the pull-up reads as ones
        byte, self._out = self._out[0], self._out[1:]
        return byte

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.readbyte()

    def writebit(self, value):
        pass  # only SEARCH ROM uses single bits; scan() models that

    def writebyte(self, value):
        self._feed(value & 0xFF)

    def write(self, buf):
        for byte in buf:
            self._feed(byte)

    def select_rom(self, rom):
        self.reset()
        self.writebyte(self.MATCH_ROM)
        self.write(rom)

    def scan(self):
        """The ROMs in the order SEARCH ROM finds them: bit by bit from the LSB of the first byte, the
        0 branch first at each discrepancy."""
        self.reset()
        return [bytearray(rom) for rom in sorted(self._present, key=_search_key)]

    def crc8(self, data):
        return _crc8(data)

    # -- what the sensors do with the bytes they receive --------------------------------------------

    def _feed(self, byte):
        state = self._state
        if state == "rom":
            if byte == self.SKIP_ROM:
                self._selected = list(self._present)
                self._state = "function"
            elif byte == self.MATCH_ROM:
                self._rom = bytearray()
                self._state = "match"
            else:
                self._state = "idle"  # READ ROM / SEARCH ROM are not modelled at the byte level
        elif state == "match":
            self._rom.append(byte)
            if len(self._rom) == 8:
                rom = bytes(self._rom)
                self._selected = [rom] if rom in self._present else []
                self._state = "function"
        elif state == "function":
            self._function(byte)
        elif state == "write":
            self._args.append(byte)
            if len(self._args) == 3:
                for rom in self._selected:
                    _sensors.setdefault(rom, _Sensor()).write(*self._args)
                self._state = "idle"

    def _function(self, byte):
        if byte == 0x44:  # CONVERT T
            for rom in self._selected:
                _sensors.setdefault(rom, _Sensor()).convert(self._present[rom])
            self._state = "idle"
        elif byte == 0xBE:  # READ SCRATCHPAD: every selected sensor drives the open-drain line (wired AND)
            out = bytearray(b"\xff" * 9)
            for rom in self._selected:
                pad = _sensors.setdefault(rom, _Sensor()).scratchpad()
                for i in range(9):
                    out[i] &= pad[i]
            self._out = bytes(out) if self._selected else b""
            self._state = "idle"
        elif byte == 0x4E:  # WRITE SCRATCHPAD: TH, TL, configuration follow
            self._args = bytearray()
            self._state = "write"
        else:
            self._state = "idle"
