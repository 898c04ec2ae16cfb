"""The virtual ESP32's firmware image: small but valid, MicroPython-like, for the demo and the tests.

The virtual chip runs the MicroPython unix port whatever app bytes it holds, so its "stock image" needs only to
be what esptool and the master's catalog check: real headers, a real partition table, a real app description.
The demo registers it in the catalog as a `virtual` image and flashes its boards with it; the tests do the same
(no stock image can be downloaded here). Real boards get a real image from the user or micropython.org.

Built with esptool's own image classes, so esptool (`image-info`, `write-flash`) takes each part as it takes
MicroPython's official `.bin`: a second-stage bootloader image, the partition table at 0x8000 (MicroPython's
layout: nvs, phy_init, factory app at 0x10000, vfs data/fat from 0x200000 to the end of flash), and an app
image whose first (DROM) segment starts with an `esp_app_desc_t` naming project "micropython" and the version.
The parts are merged into one file written at the chip's bootloader offset (0x1000 on ESP32, 0x0 on S2, S3,
C3, C6), like the official images. The code in it is filler: the virtual chip checks headers, never runs it.
"""

from __future__ import annotations

import struct
import zlib

from esptool.bin_image import ELFSection
from esptool.targets import CHIP_DEFS

from pifleet.boardfs.layout import (
    APP,
    DATA,
    TABLE_OFFSET,
    Partition,
    build_partition_table,
    micropython_default_table,
)

APP_OFFSET = 0x10000
_APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")  # esp_app_desc_t, 256 bytes
NO_AGENT_MARK = b"pifleet-sim:no-agent\0"  # see build_app
_FLASH_SIZE_CODES = {1: "1MB", 2: "2MB", 4: "4MB", 8: "8MB", 16: "16MB", 32: "32MB"}


def _rom(chip: str):
    try:
        return CHIP_DEFS[chip]
    except KeyError:
        raise ValueError(f"unknown chip {chip!r}") from None


def _image(rom, flash_size: int):
    image = rom.BOOTLOADER_IMAGE()
    image.chip_id = rom.IMAGE_CHIP_ID
    image.flash_mode = 2  # DIO, what MicroPython's images say
    mib = flash_size // (1024 * 1024)
    image.flash_size_freq = rom.FLASH_SIZES[_FLASH_SIZE_CODES[mib]] if mib in _FLASH_SIZE_CODES else 0x20
    return image


def _ram(chip: str) -> tuple[int, int]:
    """An IRAM and a DRAM address of the chip (ESP32, S2/S3, or the RISC-V chips)."""
    if chip == "esp32":
        return 0x40080400, 0x3FFF0000
    if chip in ("esp32s2", "esp32s3"):
        return 0x40378000 if chip == "esp32s3" else 0x40020000, 0x3FCD0000 if chip == "esp32s3" else 0x3FFE0000
    return 0x40380000, 0x3FC90000


def app_desc(version: str, project: str = "micropython") -> bytes:
    return _APP_DESC.pack(
        0xABCD5432,
        0,
        b"",
        version.encode(),
        project.encode(),
        b"00:00:00",
        b"Jan  1 2025",
        b"v5.2.2",
        b"\0" * 32,
        0,
        0,
        0,
        b"",
        b"",
    )


def build_bootloader(chip: str = "esp32", flash_size: int = 4 * 1024 * 1024) -> bytes:
    """A second-stage bootloader image: two RAM segments (IRAM code, DRAM data) and an entry point."""
    rom = _rom(chip)
    image = _image(rom, flash_size)
    iram, dram = _ram(chip)
    image.segments = [
        ELFSection(b".dram0.rodata", dram, b"pifleet test bootloader\0".ljust(64, b"\0"), 0),
        ELFSection(b".iram_loader.text", iram, b"\x36\x41\x00\x1d\xf0\x00\x00\x00" * 16, 0),
    ]
    image.entrypoint = iram
    return image.save(None)


def banner(version: str, date: str = "2021-08-30", board: str = "ESP32 module with ESP32") -> bytes:
    """MicroPython's start-up banner as the firmware stores it (MICROPY_FULL_VERSION_INFO, one C string)."""
    return f"MicroPython {version} on {date}; {board}\0".encode()


def build_app(
    chip: str = "esp32",
    version: str = "v1.24.1",
    flash_size: int = 4 * 1024 * 1024,
    *,
    old_idf: bool = False,
    size: int = 0,
    no_agent: bool = False,
) -> bytes:
    """The application image: DROM segment starting with esp_app_desc_t, then IRAM filler (no IROM, whose
    64 KB MMU alignment would pad the image to 64 KB for nothing). The version is in the descriptor and in the
    banner; `old_idf` leaves the descriptor's version empty, as images built with older ESP-IDF releases have it
    (MicroPython ≤ 1.17 or so), so only the banner names it. `size` pads the image to about that many bytes with
    a DROM filler segment (a stock ESP32_GENERIC-OTA app is ~1.5 MB). `no_agent` stands for a MicroPython on which
    the board's agent cannot start (its modules built for another .mpy version, a module it needs left out): the
    virtual chip, which runs the same unix port whatever the app, finds NO_AGENT_MARK in the app and the esp32
    shim then makes `import agent…` fail as on such a build (docs/flashing.md, "OTA")."""
    rom = _rom(chip)
    image = _image(rom, flash_size)
    code = b"\x36\x41\x00\x1d\xf0\x00\x00\x00" * 64
    desc = app_desc("" if old_idf else version) + b"MicroPython " * 32 + banner(version) + b"MicroPython " * 32
    if no_agent:
        desc += NO_AGENT_MARK
    pad = size - len(desc) - len(code) - 0x100
    if pad > 0:  # one DROM segment: a second one would share its 64 KB MMU page
        desc += (b"MicroPython filler " * (pad // 19 + 1))[:pad]
    image.segments = [
        ELFSection(b".flash.appdesc", rom.DROM_MAP_START + 0x20, desc, 0),
        ELFSection(b".iram0.text", _ram(chip)[0] + 0x1000, code, 0),
    ]
    image.entrypoint = _ram(chip)[0] + 0x1000
    return image.save(None)


def build_image(
    chip: str = "esp32",
    version: str = "v1.24.1",
    flash_size: int = 4 * 1024 * 1024,
    *,
    old_idf: bool = False,
    ota: bool = False,
    size: int = 0,
    no_agent: bool = False,
) -> bytes:
    """The merged image (bootloader, partition table, app), to be written at the chip's bootloader offset.
    `ota`: MicroPython's OTA layout (ESP32_GENERIC-OTA: otadata, ota_0 and ota_1, no vfs in the table), the app
    in ota_0 — the official OTA images are merged the same way (no otadata: erased flash boots ota_0)."""
    rom = _rom(chip)
    base = rom.BOOTLOADER_FLASH_OFFSET
    merged = bytearray(b"\xff" * (APP_OFFSET - base))
    bootloader = build_bootloader(chip, flash_size)
    if len(bootloader) > TABLE_OFFSET - base:
        raise ValueError("bootloader too large")
    merged[: len(bootloader)] = bootloader
    table = build_partition_table(ota_table(flash_size) if ota else micropython_default_table(flash_size))
    merged[TABLE_OFFSET - base : TABLE_OFFSET - base + len(table)] = table
    merged += build_app(chip, version, flash_size, old_idf=old_idf, size=size, no_agent=no_agent)
    return bytes(merged)


def bootloader_offset(chip: str = "esp32") -> int:
    return _rom(chip).BOOTLOADER_FLASH_OFFSET


# -- OTA: MicroPython's OTA partition table and ESP-IDF's otadata --------------------------------------------------

OTADATA_OFFSET = 0xD000
OTA_SLOT_SIZE = 0x180000
# esp_ota_img_states_t
OTA_STATES = {0: "new", 1: "pending_verify", 2: "valid", 3: "invalid", 4: "aborted", 0xFFFFFFFF: "undefined"}
NEW, PENDING_VERIFY, VALID, INVALID, ABORTED, UNDEFINED = 0, 1, 2, 3, 4, 0xFFFFFFFF
_SELECT = struct.Struct("<I20sII")  # esp_ota_select_entry_t: ota_seq, seq_label[20], ota_state, crc


def ota_table(flash_size: int = 4 * 1024 * 1024) -> list[Partition]:
    """MicroPython's ports/esp32/partitions-4MiB-ota.csv (ESP32_GENERIC-OTA): nvs, otadata, phy_init, two 1.5 MiB
    app slots, and no vfs — the port registers one at boot from the end of ota_1 (0x310000) to the end of flash."""
    if flash_size < 0x310000 + 0x10000:
        raise ValueError(f"flash of {flash_size} bytes is too small for MicroPython's OTA table")
    return [
        Partition("nvs", DATA, 0x02, 0x9000, 0x4000),
        Partition("otadata", DATA, 0x00, OTADATA_OFFSET, 0x2000),
        Partition("phy_init", DATA, 0x01, 0xF000, 0x1000),
        Partition("ota_0", APP, 0x10, 0x10000, OTA_SLOT_SIZE),
        Partition("ota_1", APP, 0x11, 0x10000 + OTA_SLOT_SIZE, OTA_SLOT_SIZE),
    ]


def select_crc(seq: int) -> int:
    """bootloader_common_ota_select_crc(): esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4)."""
    return zlib.crc32(struct.pack("<I", seq), 0xFFFFFFFF)


def select_entry(seq: int, state: int = UNDEFINED, crc: int | None = None) -> bytes:
    """One otadata sector's esp_ota_select_entry_t (seq_label left erased, as ESP-IDF leaves it)."""
    return _SELECT.pack(seq, b"\xff" * 20, state, select_crc(seq) if crc is None else crc)


def parse_select(data: bytes) -> tuple[int, int, int]:
    """(ota_seq, ota_state, crc) of an entry's 32 bytes."""
    seq, _label, state, crc = _SELECT.unpack(data[: _SELECT.size])
    return seq, state, crc


def select_valid(entry: tuple[int, int, int]) -> bool:
    """bootloader_common_ota_select_valid()."""
    seq, state, crc = entry
    return seq != 0xFFFFFFFF and state not in (INVALID, ABORTED) and crc == select_crc(seq)


def active_select(entries: list[tuple[int, int, int]]) -> int:
    """bootloader_common_get_active_otadata(): the valid entry with the higher sequence number, or -1."""
    valid = [select_valid(e) for e in entries]
    if valid[0] and valid[1]:
        return 0 if entries[0][0] >= entries[1][0] else 1
    return 0 if valid[0] else 1 if valid[1] else -1


def app_version(app: bytes) -> str | None:
    """The version in an app image's esp_app_desc_t (after the 24-byte image and 8-byte segment headers)."""
    if len(app) < 0x20 + _APP_DESC.size:
        return None
    desc = _APP_DESC.unpack(app[0x20 : 0x20 + _APP_DESC.size])
    if desc[0] != 0xABCD5432:
        return None
    return desc[3].split(b"\0", 1)[0].decode("ascii", "replace")
