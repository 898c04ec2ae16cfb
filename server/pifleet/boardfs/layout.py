"""The flash layout of an ESP32 running MicroPython: partition tables and littlefs images, bytes in and out.

Layer: pure (no I/O, no esptool, no sim). Used by the bundle builder (boardfs.bundle), the firmware catalog,
and the virtual chip's boot. The partition table format is ESP-IDF's (gen_esp32part.py): 32-byte entries `<2sBBLL16sL`
with magic 0xAA50, then an MD5 entry (0xEBEB, 14 bytes 0xFF, MD5 of the entries before it), the rest of the
0xC00-byte sector 0xFF. littlefs images are made by littlefs-python with the parameters MicroPython's
`vfs.VfsLfs2(bdev)` uses by default (4096-byte blocks from the block device, 32-byte read/prog/lookahead),
so a board mounts them as they are and its writes read back here.
"""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

import littlefs

TABLE_OFFSET = 0x8000  # where the bootloader looks for the partition table, on every chip
TABLE_SIZE = 0xC00  # the table sector as gen_esp32part pads it
BLOCK_SIZE = 4096  # flash erase sector = littlefs block on an ESP32
DEFAULT_FLASH_SIZE = 4 * 1024 * 1024
VFS_OFFSET = 0x200000  # MicroPython's vfs partition on a 4 MiB board: from here to the end of flash

_ENTRY = struct.Struct("<2sBBLL16sL")
_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb"
_FLAG_ENCRYPTED = 1

APP, DATA = 0x00, 0x01
TYPE_NAMES = {"app": APP, "data": DATA}
SUBTYPE_NAMES = {
    APP: {"factory": 0x00, "test": 0x20, **{f"ota_{n}": 0x10 + n for n in range(16)}},
    DATA: {
        "ota": 0x00,
        "phy": 0x01,
        "nvs": 0x02,
        "coredump": 0x03,
        "nvs_keys": 0x04,
        "efuse": 0x05,
        "undefined": 0x06,
        "fat": 0x81,
        "spiffs": 0x82,
        "littlefs": 0x83,
    },
}

# littlefs parameters of MicroPython's VfsLfs2 (extmod/vfs_lfsx.c defaults: readsize=32, progsize=32,
# lookahead=32; block size and count from the block device's ioctl 5 and 4).
_LFS_PARAMS = {"read_size": 32, "prog_size": 32, "lookahead_size": 32, "block_cycles": 100}


class LayoutError(ValueError):
    """Bytes that are not a partition table or a littlefs image, or a layout that cannot be built."""


class Partition(NamedTuple):
    label: str
    type: int  # APP or DATA
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size


def parse_partition_table(data: bytes) -> list[Partition]:
    """Entries of the table at the start of `data` (the 0xC00 bytes at 0x8000); the MD5 is checked."""
    parts: list[Partition] = []
    for pos in range(0, min(len(data), TABLE_SIZE) - _ENTRY.size + 1, _ENTRY.size):
        entry = data[pos : pos + _ENTRY.size]
        if entry[:2] == _MD5_MAGIC:
            if entry[16:] != hashlib.md5(data[:pos]).digest():
                raise LayoutError("partition table MD5 does not match its entries")
            break
        if entry == b"\xff" * _ENTRY.size:
            break
        magic, ptype, subtype, offset, size, label, flags = _ENTRY.unpack(entry)
        if magic != _MAGIC:
            raise LayoutError(f"no partition table entry at byte {pos} (magic {magic.hex()})")
        parts.append(Partition(label.rstrip(b"\x00").decode("ascii", "replace"), ptype, subtype, offset, size, flags))
    if not parts:
        raise LayoutError("no partition table (blank or foreign data at 0x8000)")
    return parts


def build_partition_table(parts: list[Partition]) -> bytes:
    """The 0xC00-byte table sector for `parts`, with its MD5 entry, as gen_esp32part writes it."""
    body = b""
    for part in parts:
        label = part.label.encode("ascii")
        if len(label) > 16:
            raise LayoutError(f"partition label {part.label!r} is longer than 16 bytes")
        if part.offset % BLOCK_SIZE and part.type == DATA and part.subtype not in (0x01, 0x02):
            raise LayoutError(f"partition {part.label!r} is not aligned to {BLOCK_SIZE:#x}")
        body += _ENTRY.pack(
            _MAGIC, part.type, part.subtype, part.offset, part.size, label.ljust(16, b"\x00"), part.flags
        )
    body += _MD5_MAGIC + b"\xff" * 14 + hashlib.md5(body).digest()
    if len(body) > TABLE_SIZE:
        raise LayoutError(f"{len(parts)} partitions do not fit in a partition table")
    return body.ljust(TABLE_SIZE, b"\xff")


def micropython_default_table(flash_size: int = DEFAULT_FLASH_SIZE) -> list[Partition]:
    """MicroPython's ESP32 table (ports/esp32/partitions-4MiB.csv), its vfs stretched to the end of flash."""
    if flash_size <= VFS_OFFSET:
        raise LayoutError(f"flash of {flash_size} bytes leaves no room for vfs at {VFS_OFFSET:#x}")
    return [
        Partition("nvs", DATA, 0x02, 0x9000, 0x6000),
        Partition("phy_init", DATA, 0x01, 0xF000, 0x1000),
        Partition("factory", APP, 0x00, 0x10000, 0x1F0000),
        Partition("vfs", DATA, 0x81, VFS_OFFSET, flash_size - VFS_OFFSET),
    ]


def find_vfs(parts: list[Partition]) -> Partition | None:
    """The filesystem partition: labelled `vfs` (MicroPython's name), or the first data/fat|littlefs one."""
    for part in parts:
        if part.label == "vfs" and part.type == DATA:
            return part
    for part in parts:
        if part.type == DATA and part.subtype in (0x81, 0x83):
            return part
    return None


def find_app(parts: list[Partition]) -> Partition | None:
    """The partition the bootloader starts: factory, else the first OTA slot."""
    apps = [p for p in parts if p.type == APP]
    for part in apps:
        if part.subtype == 0x00:
            return part
    return apps[0] if apps else None


def _lfs(size: int, *, mount: bool, context=None) -> littlefs.LittleFS:
    if size <= 0 or size % BLOCK_SIZE:
        raise LayoutError(f"littlefs size {size} is not a positive multiple of {BLOCK_SIZE}")
    return littlefs.LittleFS(
        context=context, block_size=BLOCK_SIZE, block_count=size // BLOCK_SIZE, mount=mount, **_LFS_PARAMS
    )


def build_littlefs(files: dict[str, bytes], size: int, last: tuple[str, ...] = ()) -> bytes:
    """A littlefs v2 image of `size` bytes holding `files` ("dir/name.py" -> content; parents are made), written in
    name order, the paths in `last` after the others, in that order: littlefs finds an entry by walking its
    directory's log back from the newest commit, so a file written later takes fewer flash reads to open."""
    fs = _lfs(size, mount=False)
    fs.format()
    fs.mount()
    try:
        for path in sorted(files, key=lambda p: (p in last, last.index(p) if p in last else 0, p)):
            parts = path.strip("/").split("/")
            if not parts[-1]:
                raise LayoutError(f"file name missing in {path!r}")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                try:
                    fs.mkdir(directory)
                except FileExistsError:
                    pass
            with fs.open("/".join(parts), "wb") as f:
                f.write(files[path])
    except littlefs.errors.LittleFSError as e:  # typically "no space": the files exceed the partition
        raise LayoutError(f"cannot build a {size}-byte littlefs image: {e}") from e
    finally:
        fs.unmount()
    image = bytes(fs.context.buffer)
    return image


def read_littlefs(image: bytes) -> dict[str, bytes]:
    """Every file of a littlefs image ("dir/name" -> content); LayoutError when it does not mount."""
    context = littlefs.UserContext(len(image))
    context.buffer[:] = image
    fs = _lfs(len(image), mount=False, context=context)  # mount=True would format a blank image
    try:
        fs.mount()
    except littlefs.errors.LittleFSError as e:
        raise LayoutError(f"not a littlefs image: {e}") from e
    files: dict[str, bytes] = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            path = f"{root.rstrip('/')}/{name}".lstrip("/")
            with fs.open(path, "rb") as f:
                files[path] = f.read()
    fs.unmount()
    return files
