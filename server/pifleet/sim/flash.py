"""The virtual chip's SPI flash (a file of the board's flash size) and its identity (MAC and eFuse words).

Layer: sim, pure file I/O. Erased flash reads 0xFF, as NOR flash does. The identity is derived from the
board's name, so a board keeps its MAC across restarts and two boards never share one; the MAC is locally
administered (02:…), never one a real Espressif board could have. eFuse words are the ones esptool reads
from an ESP32 (EFUSE_BLK0 words 1..6): an ESP32-D0WD-V3 rev 3.0, 40 MHz crystal, no security features.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

SECTOR = 4096
DEFAULT_SIZE = 4 * 1024 * 1024


def parse_size(text: str | int) -> int:
    """'4MB', '4M', '4MiB', '4194304' -> bytes."""
    if isinstance(text, int):
        return text
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    for suffix, factor in (("M", 1024 * 1024), ("K", 1024)):
        if t.endswith(suffix):
            return int(float(t[:-1]) * factor)
    return int(t)


class Flash:
    """Random access to the flash file; created erased (all 0xFF) when missing."""

    def __init__(self, path: Path, size: int = DEFAULT_SIZE) -> None:
        self.path = Path(path)
        if size % SECTOR or size <= 0:
            raise ValueError(f"flash size {size} is not a multiple of {SECTOR}")
        if not self.path.exists() or self.path.stat().st_size != size:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as f:
                for _ in range(size // (1024 * 1024) or 1):
                    f.write(b"\xff" * min(size, 1024 * 1024))
            os.truncate(self.path, size)
        self.size = size

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"flash access {offset:#x}+{length:#x} beyond {self.size:#x}")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def erase(self, offset: int, length: int) -> None:
        """Erase whole sectors covering offset..offset+length (as the SPI flash erases)."""
        start = offset - offset % SECTOR
        end = min(self.size, -(-(offset + length) // SECTOR) * SECTOR)
        if end > start:
            self.write(start, b"\xff" * (end - start))

    def erase_all(self) -> None:
        self.erase(0, self.size)

    def md5(self, offset: int, length: int) -> bytes:
        return hashlib.md5(self.read(offset, length)).digest()


def board_mac(name: str) -> bytes:
    """Six bytes, stable for a name: 02:e5:32 (locally administered) + 3 bytes of SHA-256(name)."""
    return b"\x02\xe5\x32" + hashlib.sha256(name.encode()).digest()[:3]


def efuse_words(mac: bytes) -> dict[int, int]:
    """EFUSE_BLK0 read words n -> value, as esptool's ESP32ROM reads them (read_mac packs words 2, 1)."""
    (word1,) = struct.unpack(">I", mac[2:6])
    word2 = (mac[0] << 8) | mac[1]  # top byte would be the MAC's CRC8; esptool ignores it
    return {
        1: word1,
        2: word2,
        3: (1 << 9) | (1 << 15),  # package ESP32-D0WD (1), rev bit 0
        4: 100,  # CK8M frequency calibration (with RTCCALICFG1: a 40 MHz crystal)
        5: 1 << 20,  # rev bit 1; with APB_CTL_DATE bit 31: chip revision 3
        6: 0,
    }
