"""The ESP32 ROM serial bootloader (and esptool's flasher stub), as the real esptool speaks to them.

Layer: sim, pure protocol: SLIP frames in, SLIP frames out, flash through a `Flash`; no ports, no threads.
Frames are `<BBHI` (direction, command, length, checksum/value) + data; the XOR checksum of data blocks is
seeded with 0xEF. The ROM answers with 4 status bytes, the stub with 2 (esptool reads the first two).

What the virtual chip cannot do is run code: a RAM upload (MEM_BEGIN/DATA/END with an entry point) is taken
for esptool's flasher stub, which is then "running": it greets with OHAI and from there answers with stub
semantics (READ_FLASH streaming with MD5, ERASE_FLASH/REGION, raw MD5 digests). So esptool with its default
options (stub on) and with --no-stub both work. SPI flash commands that esptool runs through SPI registers
(RDID for the flash size, status reads) are answered from the flash size.

Leaving the loader is reported, not done here: `reboot` is "run the firmware in flash", `stay` is "back to
ROM download mode" (stub FLASH_END(reboot) — esptool's `--after no-reset`).
"""

from __future__ import annotations

import hashlib
import logging
import struct
import zlib

from pifleet.sim.flash import Flash, efuse_words

logger = logging.getLogger(__name__)

SLIP_END, SLIP_ESC = 0xC0, 0xDB
CHECKSUM_SEED = 0xEF

FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, READ_FLASH_SLOW, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0E, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END, SPI_FLASH_MD5 = 0x10, 0x11, 0x12, 0x13
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE = 0xD0, 0xD1, 0xD2, 0xD3

CHIP_MAGIC_REG, CHIP_MAGIC = 0x40001000, 0x00F01D83
EFUSE_BASE = 0x3FF5A000
APB_CTL_DATE = 0x3FF6607C
UART_CLKDIV_REG = 0x3FF40014
RTCCALICFG1 = 0x3FF5F06C
SPI_BASE = 0x3FF42000  # SPI1, the flash controller
SPI_CMD, SPI_USR2, SPI_W0 = SPI_BASE, SPI_BASE + 0x24, SPI_BASE + 0x80
SPI_CMD_USR = 1 << 18

# Error codes of the ROM (second status byte).
ERR_INVALID_MESSAGE, ERR_BAD_CHECKSUM, ERR_BAD_DATA = 0x05, 0x07, 0x09


def slip_encode(packet: bytes) -> bytes:
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipDecoder:
    """Bytes in any chunking -> complete frames; bytes outside frames are ignored."""

    def __init__(self) -> None:
        self._buf: bytearray | None = None
        self._esc = False

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for b in data:
            if self._buf is None:
                if b == SLIP_END:
                    self._buf = bytearray()
                continue
            if self._esc:
                self._esc = False
                self._buf.append({0xDC: SLIP_END, 0xDD: SLIP_ESC}.get(b, b))
            elif b == SLIP_ESC:
                self._esc = True
            elif b == SLIP_END:
                if self._buf:
                    frames.append(bytes(self._buf))
                    self._buf = None
                # an empty frame: the END was a start marker; keep collecting
            else:
                self._buf.append(b)
        return frames


def checksum(data: bytes) -> int:
    value = CHECKSUM_SEED
    for b in data:
        value ^= b
    return value


def is_sync(frame: bytes) -> bool:
    return len(frame) >= 8 and frame[0] == 0 and frame[1] == SYNC


class RomLoader:
    """One session of the download mode; handle(frame) returns the frames to send back."""

    def __init__(self, flash: Flash, mac: bytes) -> None:
        self.flash = flash
        self.efuse = efuse_words(mac)
        self.stub = False
        self.reboot = False  # set: the chip leaves download mode and runs the firmware in flash
        self.stay = False  # set: back to the ROM loader at esptool's request (do not boot on close)
        self.regs: dict[int, int] = {}
        self._write: tuple[int, int, int] | None = None  # (offset, size, block size) of FLASH_BEGIN
        self._defl: tuple[int, int, zlib._Decompress] | None = None  # (offset, written, decompressor)
        self._mem = False

    # -- framing ---------------------------------------------------------------------------------

    def _reply(self, op: int, value: int = 0, data: bytes = b"", status: int = 0, error: int = 0) -> bytes:
        tail = bytes([status, error]) + (b"" if self.stub else b"\0\0")
        body = data + tail
        return slip_encode(struct.pack("<BBHI", 1, op, len(body), value) + body)

    def handle(self, frame: bytes) -> list[bytes]:
        if len(frame) < 8 or frame[0] != 0:
            return []  # not a command (e.g. esptool's READ_FLASH acknowledgements)
        _, op, length, chk = struct.unpack("<BBHI", frame[:8])
        data = frame[8 : 8 + length]
        try:
            return self._dispatch(op, data, chk)
        except (ValueError, struct.error, zlib.error) as e:
            logger.info("ROM loader: command %#04x refused: %s", op, e)
            return [self._reply(op, status=1, error=ERR_BAD_DATA)]

    def _dispatch(self, op: int, data: bytes, chk: int) -> list[bytes]:
        ok = self._reply
        if op == SYNC:
            # The ROM answers a sync eight times with a non-zero value; the stub answers once with 0.
            return [ok(op, 0)] if self.stub else [ok(op, 0x20120707)] * 8
        if op == READ_REG:
            (addr,) = struct.unpack("<I", data[:4])
            return [ok(op, self._read_reg(addr))]
        if op == WRITE_REG:
            for pos in range(0, len(data) - 15, 16):
                addr, value, mask, _delay = struct.unpack("<IIII", data[pos : pos + 16])
                self._write_reg(addr, value, mask)
            return [ok(op)]
        if op in (SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE):
            return [ok(op)]
        if op == MEM_BEGIN:
            self._mem = True
            return [ok(op)]
        if op == MEM_DATA:
            if not self._mem:
                return [ok(op, status=1, error=ERR_BAD_DATA)]
            if checksum(data[16:]) != chk:
                return [ok(op, status=1, error=ERR_BAD_CHECKSUM)]
            return [ok(op)]
        if op == MEM_END:
            no_entry, entry = struct.unpack("<II", data[:8])
            frames = [ok(op)]
            if self._mem and not no_entry and entry:
                logger.debug("ROM loader: RAM program started at %#x (taken for the flasher stub)", entry)
                self.stub = True
                frames.append(slip_encode(b"OHAI"))
            self._mem = False
            return frames
        if op in (FLASH_BEGIN, FLASH_DEFL_BEGIN):
            size, _blocks, block_size, offset = struct.unpack("<IIII", data[:16])
            if op == FLASH_BEGIN:
                self.flash.erase(offset, size)
                self._write = (offset, size, block_size)
            else:
                # The ROM erases the (uncompressed) size; the stub erases as it writes: same result.
                self.flash.erase(offset, size)
                self._defl = (offset, 0, zlib.decompressobj())
            return [ok(op)]
        if op == FLASH_DATA:
            length, seq, _, _ = struct.unpack("<IIII", data[:16])
            block = data[16 : 16 + length]
            if checksum(block) != chk and not self.stub:
                return [ok(op, status=1, error=ERR_BAD_CHECKSUM)]
            if self._write is None:
                return [ok(op, status=1, error=ERR_BAD_DATA)]
            offset, size, block_size = self._write
            at = offset + seq * block_size
            self.flash.write(at, block[: max(0, min(len(block), self.flash.size - at))])
            return [ok(op)]
        if op == FLASH_DEFL_DATA:
            length, _seq, _, _ = struct.unpack("<IIII", data[:16])
            if self._defl is None:
                return [ok(op, status=1, error=ERR_BAD_DATA)]
            offset, written, decomp = self._defl
            out = decomp.decompress(data[16 : 16 + length])
            self.flash.write(offset + written, out)
            self._defl = (offset, written + len(out), decomp)
            return [ok(op)]
        if op in (FLASH_END, FLASH_DEFL_END):
            (run_or_stay,) = struct.unpack("<I", data[:4]) if len(data) >= 4 else (1,)
            self._write = self._defl = None
            if self.stub and run_or_stay == 0:  # esptool --after no-reset: the stub returns to the ROM
                self.stub, self.stay = False, True
            elif not self.stub and run_or_stay == 1:  # ROM: "run user code"
                self.reboot = True
            return [ok(op)]
        if op == SPI_FLASH_MD5:
            addr, size, _, _ = struct.unpack("<IIII", data[:16])
            digest = self.flash.md5(addr, size)
            return [ok(op, data=digest if self.stub else digest.hex().encode())]
        if op == READ_FLASH_SLOW and not self.stub:
            offset, length = struct.unpack("<II", data[:8])
            return [ok(op, data=self.flash.read(offset, length))]
        if self.stub:
            return self._stub_only(op, data)
        return [ok(op, status=1, error=ERR_INVALID_MESSAGE)]  # e.g. GET_SECURITY_INFO: not in an ESP32 ROM

    def _stub_only(self, op: int, data: bytes) -> list[bytes]:
        ok = self._reply
        if op == ERASE_FLASH:
            self.flash.erase_all()
            return [ok(op)]
        if op == ERASE_REGION:
            offset, size = struct.unpack("<II", data[:8])
            self.flash.erase(offset, size)
            return [ok(op)]
        if op == READ_FLASH:
            offset, length, packet, _inflight = struct.unpack("<IIII", data[:16])
            content = self.flash.read(offset, length)
            frames = [ok(op)]
            # esptool acknowledges each packet; its acknowledgements are not commands and are ignored,
            # and the chip's port buffers what esptool has not read yet.
            frames += [slip_encode(content[pos : pos + packet]) for pos in range(0, length, packet)]
            frames.append(slip_encode(hashlib.md5(content).digest()))
            return frames
        if op == RUN_USER_CODE:
            self.reboot = True
            return []
        return [ok(op, status=1, error=ERR_INVALID_MESSAGE)]

    # -- registers ---------------------------------------------------------------------------------

    def _read_reg(self, addr: int) -> int:
        if addr == CHIP_MAGIC_REG:
            return CHIP_MAGIC
        if EFUSE_BASE <= addr < EFUSE_BASE + 0x100:
            return self.efuse.get((addr - EFUSE_BASE) // 4, 0)
        if addr == APB_CTL_DATE:
            return 1 << 31
        if addr == UART_CLKDIV_REG:
            return 347  # 115200 baud from a 40 MHz APB clock
        if addr == RTCCALICFG1:
            return 1024 << 7  # with eFuse CK8M 100: the ROM's estimate of a 40 MHz crystal
        return self.regs.get(addr, 0)

    def _write_reg(self, addr: int, value: int, mask: int) -> None:
        value = (self.regs.get(addr, 0) & ~mask) | (value & mask)
        if addr == SPI_CMD and value & SPI_CMD_USR:
            self._spi_command(self.regs.get(SPI_USR2, 0) & 0xFFFF)
            value &= ~SPI_CMD_USR  # the controller is done at once
        self.regs[addr] = value

    def _spi_command(self, command: int) -> None:
        if command == 0x9F:  # RDID: manufacturer, memory type, capacity (log2 of the size)
            self.regs[SPI_W0] = 0xC8 | (0x40 << 8) | ((self.flash.size.bit_length() - 1) << 16)
        else:  # status registers and the rest: all clear
            self.regs[SPI_W0] = 0
