"""The base-image catalog: stock MicroPython images (chip, version, SHA-256, file under data_dir/firmware/).

Layer: service. No litestar here. An image is checked with esptool's own image classes before it is accepted
(the ESP image magic, the chip id of the extended header, the bootloader and app images parse with valid
checksums and appended SHA-256 digests, a partition table at 0x8000, the app's esp_app_desc for the
MicroPython version). Its stored file is hashed again before every use, so a file changed on disk is never
written to a board.

`fetch()` downloads an official release from micropython.org, only when a person asks. What it can verify:
the SHA-256 the person passes (from a source they trust) or one pinned in PINNED_SHA256; micropython.org does
not publish checksums, so without either the download is trusted only as far as HTTPS and the image's own
structure and digests go — `trust_https=True` has to say so explicitly. Tests never call it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import urllib.request
from pathlib import Path
from typing import NamedTuple

import asyncpg

from ..boardfs import layout
from ..boardfs.mpy import version_tuple
from ..errors import ConflictError, InvalidError, NotFoundError
from . import storage as q
from .model import FirmwareRead

log = logging.getLogger(__name__)

ESP_IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
MAX_IMAGE_SIZE = 16 * 1024 * 1024
# The oldest MicroPython the agent runs on (docs/agent.md): it needs `asyncio` by that name with the
# `core._io_queue` it polls sockets through (v1.21+), and its heap budget assumes v1.22's split heap.
AGENT_MIN_VERSION = "v1.22.0"
# MicroPython's banner (MICROPY_FULL_VERSION_INFO): "MicroPython v1.16-… on 2021-08-30; ESP32 module with ESP32"
_BANNER = re.compile(rb"MicroPython (v\d+\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.+_-]*)?) on \d{4}-\d{2}-\d{2}; ")

# micropython.org board names and release file names, per chip and version (the file names carry the build date).
BOARDS = {
    "ESP32": "ESP32_GENERIC",
    "ESP32-S2": "ESP32_GENERIC_S2",
    "ESP32-S3": "ESP32_GENERIC_S3",
    "ESP32-C3": "ESP32_GENERIC_C3",
    "ESP32-C6": "ESP32_GENERIC_C6",
}
RELEASE_DATES = {
    "v1.22.2": "20240222",
    "v1.23.0": "20240602",
    "v1.24.0": "20241025",
    "v1.24.1": "20241129",
    "v1.25.0": "20250415",
}
DOWNLOAD_URL = "https://micropython.org/resources/firmware/{board}-{date}-{version}.bin"
# (chip, version) -> SHA-256 of the official file, checked by hand against a trusted copy. Empty until someone
# has done that: an unpinned fetch needs the caller's --sha256 or an explicit trust_https.
PINNED_SHA256: dict[tuple[str, str], str] = {}


class ImageInfo(NamedTuple):
    chip: str  # esptool's chip name: ESP32, ESP32-S3 …
    version: str  # from esp_app_desc: v1.24.1
    project: str  # micropython
    offset: int  # where the file goes in flash
    ota: bool = False  # the partition table has otadata and at least two OTA app slots


def ota_capable(parts: list[layout.Partition]) -> bool:
    """An OTA layout: an `otadata` partition (data/ota) and two or more OTA app slots (ota_0, ota_1 …)."""
    slots = [p for p in parts if p.type == layout.APP and 0x10 <= p.subtype < 0x20]
    return any(p.type == layout.DATA and p.subtype == 0x00 for p in parts) and len(slots) >= 2


def image_offset(chip: str) -> int:
    """Where the chip's ROM looks for the bootloader, and so where a merged image starts: 0x1000 on ESP32 and
    ESP32-S2, 0x0 on S3, C3, C6 (esptool's BOOTLOADER_FLASH_OFFSET)."""
    from esptool.targets import CHIP_DEFS

    return CHIP_DEFS[_esptool_key(chip)].BOOTLOADER_FLASH_OFFSET


def normalize_chip(chip: str) -> str:
    """esp32s3 / ESP32-S3 / esp32-s3 -> ESP32-S3 (esptool's CHIP_NAME)."""
    from esptool.targets import ROM_LIST

    key = re.sub(r"[-_() ]", "", chip.lower())
    for rom in ROM_LIST:
        if re.sub(r"[-() ]", "", rom.CHIP_NAME.lower()) == key:
            return rom.CHIP_NAME
    raise InvalidError(f"unknown chip {chip!r}", field="chip")


def _esptool_key(chip: str) -> str:
    return re.sub(r"[-()]", "", chip.lower())


def inspect_image(data: bytes) -> ImageInfo:
    """Check a MicroPython firmware file with esptool's image classes; InvalidError(field="file") if it is not."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.targets import ROM_LIST
    from esptool.util import FatalError

    if len(data) < 0x100 or data[0] != ESP_IMAGE_MAGIC:
        raise InvalidError("not an ESP firmware image (no 0xE9 image magic at its start)", field="file")
    chip_id = int.from_bytes(data[12:14], "little")  # extended header, byte 4 of 16
    chip = next((r.CHIP_NAME for r in ROM_LIST if r.IMAGE_CHIP_ID == chip_id and r.IMAGE_CHIP_ID is not None), None)
    if chip is None:
        raise InvalidError(f"unknown chip id {chip_id} in the image header", field="file")
    offset = image_offset(chip)
    try:
        boot = LoadFirmwareImage(_esptool_key(chip), data)
        _check_image(boot, "bootloader")
    except (FatalError, ValueError, IndexError, KeyError, OSError) as e:  # esptool raises a few kinds
        raise InvalidError(
            f"the {chip} bootloader image at the start of the file is damaged: {e}", field="file"
        ) from None
    table_at = layout.TABLE_OFFSET - offset
    try:
        parts = layout.parse_partition_table(data[table_at : table_at + layout.TABLE_SIZE])
    except layout.LayoutError as e:
        raise InvalidError(
            f"no valid partition table at {layout.TABLE_OFFSET:#x} ({e}): not a complete "
            "MicroPython firmware file for this chip (the .bin from micropython.org)",
            field="file",
        ) from None
    app_part = layout.find_app(parts)
    if app_part is None or app_part.offset - offset >= len(data):
        raise InvalidError("the partition table names no app the file contains", field="file")
    try:
        app = LoadFirmwareImage(_esptool_key(chip), data[app_part.offset - offset :])
        _check_image(app, "app")
    except (FatalError, ValueError, IndexError, KeyError, OSError) as e:
        raise InvalidError(f"the app image at {app_part.offset:#x} is damaged: {e}", field="file") from None
    if getattr(app, "chip_id", chip_id) != chip_id:
        raise InvalidError("the app image is for another chip than its bootloader", field="file")
    version, project = _app_desc(app)
    if not version:  # images built with older ESP-IDF releases: the version is only in the banner
        found = _BANNER.search(data, app_part.offset - offset)
        if found is None:
            raise InvalidError(
                "the app image names no MicroPython version (no version in its esp_app_desc, no banner)", field="file"
            )
        version, project = found.group(1).decode(), project or "micropython"
    if version_tuple(version) < version_tuple(AGENT_MIN_VERSION):
        raise InvalidError(
            f"MicroPython {version} is older than {AGENT_MIN_VERSION}, the oldest the pifleet agent runs on: "
            "use a newer image",
            field="file",
        )
    return ImageInfo(chip, version, project, offset, ota_capable(parts))


def _check_image(image, what: str) -> None:
    if image.checksum != image.calculate_checksum():
        raise ValueError(f"{what} checksum mismatch")
    if getattr(image, "append_digest", False) and image.stored_digest != image.calc_digest:
        raise ValueError(f"{what} SHA-256 digest mismatch")


def _app_desc(app) -> tuple[str, str]:
    """(version, project) from esp_app_desc_t at the start of the first DROM segment."""
    for seg in app.segments:
        if "DROM" in seg.get_memory_type(app):
            data = bytes(seg.data[:256])
            if len(data) < 256 or int.from_bytes(data[:4], "little") != APP_DESC_MAGIC:
                return "", ""
            version = data[16:48].split(b"\x00")[0].decode("ascii", "replace")
            project = data[48:80].split(b"\x00")[0].decode("ascii", "replace")
            return version, project
    return "", ""


class Catalog:
    """The firmware table plus the files in `directory` (data_dir/firmware)."""

    def __init__(self, pool: asyncpg.Pool, directory: Path) -> None:
        self.pool = pool
        self.directory = directory

    async def add(self, data: bytes, *, source: str = "user") -> tuple[FirmwareRead, bool]:
        """Check and store an image; returns the entry and whether it is new (same SHA-256: the existing one)."""
        if len(data) > MAX_IMAGE_SIZE:
            raise InvalidError(f"an image of {len(data)} bytes is larger than any ESP32 flash", field="file")
        info = await asyncio.to_thread(inspect_image, data)
        sha = hashlib.sha256(data).hexdigest()
        filename = f"{info.chip.lower()}-{info.version}-{sha[:12]}.bin"
        await asyncio.to_thread(self._store, filename, data)
        entry, created = await q.insert_firmware(
            self.pool,
            chip=info.chip,
            version=info.version,
            sha256=sha,
            size=len(data),
            filename=filename,
            offset=info.offset,
            project=info.project,
            source=source,
            ota=info.ota,
        )
        if created:
            log.info(
                "firmware %d added: %s %s (%s, %d bytes, sha256 %s)",
                entry.id,
                info.chip,
                info.version,
                info.project or "?",
                len(data),
                sha,
            )
        return entry, created

    def _store(self, filename: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / filename
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    async def list(self) -> list[FirmwareRead]:
        return await q.list_firmware(self.pool)

    async def get(self, firmware_id: int, field: str = "firmware") -> FirmwareRead:
        entry = await q.get_firmware(self.pool, firmware_id)
        if entry is None:
            raise NotFoundError(f"no firmware with id {firmware_id} in the catalog", field=field)
        return entry

    async def newest_for(self, chip: str, ota: bool = False) -> FirmwareRead | None:
        """The default base image for a chip: the highest MicroPython version (the latest added among equals);
        with `ota`, among the OTA-capable images only."""
        entries = [e for e in await q.firmware_for_chip(self.pool, chip) if e.ota or not ota]
        return max(entries, key=lambda e: (version_tuple(e.version), e.added_at, e.id), default=None)

    async def read_verified(self, entry: FirmwareRead, field: str = "firmware") -> bytes:
        """The image's bytes, after checking them against the catalog's SHA-256 (before every use)."""
        path = self.directory / entry.filename
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ConflictError(
                f"the file of firmware {entry.id} ({path}) is missing; add the image again", field=field
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry.sha256:
            raise ConflictError(
                f"the file of firmware {entry.id} ({entry.chip} {entry.version}) does not match its catalog "
                f"SHA-256 (expected {entry.sha256}, file has {actual}); it was changed on disk — nothing was "
                "written; add the image again",
                field=field,
            )
        return data

    async def fetch(
        self, chip: str, version: str, sha256: str | None = None, *, trust_https: bool = False
    ) -> tuple[FirmwareRead, bool]:
        """Download an official release from micropython.org and add it (source 'official')."""
        chip = normalize_chip(chip)
        version = version if version.startswith("v") else "v" + version
        board = BOARDS.get(chip)
        if board is None:
            raise InvalidError(f"no official generic image known for {chip} (known: {', '.join(BOARDS)})", field="chip")
        date = RELEASE_DATES.get(version)
        if date is None:
            raise InvalidError(
                f"release {version} is not in the table of known releases "
                f"({', '.join(RELEASE_DATES)}); download it yourself and use `firmware add`",
                field="version",
            )
        expected = (sha256 or PINNED_SHA256.get((chip, version)) or "").lower() or None
        if expected is None and not trust_https:
            raise InvalidError(
                "micropython.org publishes no checksums and none is pinned for this release: pass the SHA-256 "
                "you trust (--sha256), or accept a download checked only by HTTPS and the image's own digests "
                "(--trust-https)",
                field="sha256",
            )
        url = DOWNLOAD_URL.format(board=board, date=date, version=version)
        log.info("downloading %s", url)
        try:
            data = await asyncio.to_thread(_download, url)
        except OSError as e:
            raise InvalidError(f"cannot download {url}: {e}", field="version") from None
        actual = hashlib.sha256(data).hexdigest()
        if expected is not None and actual != expected:
            raise InvalidError(
                f"the download from {url} has SHA-256 {actual}, expected {expected}: refused", field="sha256"
            )
        info = await asyncio.to_thread(inspect_image, data)
        if info.chip != chip or version_tuple(info.version) != version_tuple(version):
            raise InvalidError(f"the download is {info.chip} {info.version}, not {chip} {version}", field="version")
        return await self.add(data, source="official")


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https URL
        return response.read(MAX_IMAGE_SIZE + 1)
