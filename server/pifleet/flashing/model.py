"""The wire shapes of flashing: one msgspec Struct per shape, shared by the API, the CLI and the service.

No I/O here. Kept beside the flashing service rather than in pifleet.model so the fleet and job shapes stay
readable; the same rules apply (validated once at each edge, fields named as on the wire).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from ..model import Name

Chip = Annotated[str, Meta(min_length=4, max_length=16, pattern=r"^[Ee][Ss][Pp]32(-?[A-Za-z][0-9]+)?$")]
Version = Annotated[str, Meta(min_length=2, max_length=32, pattern=r"^v?\d+\.\d+(\.\d+)?(-[A-Za-z0-9.]+)?$")]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{64}$")]
Port = Annotated[str, Meta(min_length=1, max_length=256)]

FlashState = Literal["queued", "probing", "writing", "verifying", "done", "failed"]


class FirmwareRead(Struct):
    """One base image of the catalog: stock MicroPython for a chip, as a file under data_dir/firmware/."""

    id: int
    chip: str
    version: str
    sha256: str
    size: int
    filename: str
    offset: int
    project: str
    source: Literal["user", "official", "virtual"]
    added_at: datetime
    ota: bool = False  # its partition table has otadata and two app slots: it can be updated over the air


class FirmwareFetch(Struct, forbid_unknown_fields=True):
    chip: Chip
    version: Version
    sha256: Sha256 | None = None
    # accept a download with no SHA-256 to check (only HTTPS and the image's own digests vouch for it)
    trust_https: bool = False


class ChipInfo(Struct):
    """What esptool learns from a board in download mode."""

    chip: str  # esptool's name: ESP32, ESP32-S3 …
    mac: str  # aa:bb:cc:dd:ee:ff
    flash_size: int | None  # bytes, None when the flash id is unknown
    features: list[str] = []
    crystal_mhz: int | None = None


class UsbBoard(Struct):
    """A serial port that may hold a board: a real USB bridge, or a virtual board on the "USB bus"."""

    port: str
    bridge: str  # CP210x, CH340, CH9102, FTDI, Espressif native USB, virtual, unknown
    vid: int | None = None
    pid: int | None = None
    description: str = ""
    serial_number: str | None = None
    virtual: bool = False
    probe: ChipInfo | None = None  # after a probe (or a flash) of this port
    probe_error: str | None = None
    device_id: str | None = None  # the known device with this MAC
    device_name: str | None = None


class ProbeRequest(Struct, forbid_unknown_fields=True):
    port: Port


class FlashRequest(Struct, forbid_unknown_fields=True):
    port: Port
    name: Name
    role: Name
    firmware: int | None = None  # catalog id; default: the newest image for the probed chip
    factory_reset: bool = False
    # the OTA layout: an OTA-capable image (the newest for the chip unless `firmware` names one), otadata erased
    # so the board starts in ota_0; None: the master's default (PIFLEET_FLASH_OTA)
    ota: bool | None = None
    baud: Annotated[int, Meta(ge=9600, le=4_000_000)] = 460800
    # how long a registration lasts without an update (the board updates every third of it): shorter notices
    # a board gone sooner, longer saves its radio
    lifetime_s: Annotated[int, Meta(ge=5, le=86400)] = 60


class FlashJobRead(Struct):
    id: str
    port: str
    name: str
    role: str
    firmware: int | None
    factory_reset: bool
    device_id: str | None
    mac: str | None
    chip: str | None
    state: FlashState
    progress: int
    bytes: int | None
    bytes_sent: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


RolloutBoardState = Literal["pending", "transferring", "rebooting", "confirming", "done", "rolled_back", "failed"]


class FirmwareRolloutCreate(Struct, forbid_unknown_fields=True):
    """POST /api/firmware/ID/rollouts: every board of a role, or the boards named."""

    role: Name | None = None
    devices: Annotated[list[Name], Meta(min_length=1, max_length=1000)] | None = None


class FirmwareRolloutBoard(Struct):
    device: str  # its name
    device_id: str
    state: RolloutBoardState
    progress: int  # of the transfer, 0-100
    reason: str | None  # why it failed or rolled back
    from_version: str | None  # the MicroPython it ran before (its running partition's app descriptor)
    to_version: str | None


class FirmwareRolloutRead(Struct):
    id: int
    firmware: int
    version: str  # the MicroPython the boards are moved to
    target: dict[str, Any]  # {"role": R} or {"devices": [names]}
    state: Literal["running", "done", "halted"]
    reason: str | None  # why it halted: "DEVICE: reason"
    created_at: datetime
    finished_at: datetime | None
    boards: list[FirmwareRolloutBoard]  # the canary first
