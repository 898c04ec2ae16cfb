"""JSON API of flashing: USB boards, probing, the base-image catalog, flash jobs.

Layer: adapter (Litestar). Thin: decode, call the flashing services on the Master, return their Structs.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from ..errors import InvalidError
from ..master import Master
from ..storage import flashing as q
from .model import FirmwareFetch, FirmwareRead, FlashJobRead, FlashRequest, ProbeRequest, UsbBoard

RowId = Annotated[int, Parameter(ge=1, le=2**31 - 1)]  # an id that fits its column (else 400)

MAX_UPLOAD = 16 * 1024 * 1024


async def boards_with_devices(master: Master) -> list[UsbBoard]:
    """The USB boards now, each with its probe result and the known device of that MAC."""
    boards = master.usb.snapshot()
    known = await q.device_names(master.pool, [b.probe.mac for b in boards if b.probe])
    for board in boards:
        if board.probe and board.probe.mac in known:
            board.device_id, board.device_name = known[board.probe.mac]
    return boards


class BoardController(Controller):
    path = "/api/boards"
    tags = ["flashing"]

    @get("/", operation_id="listUsbBoards", summary="Boards on the Pi's USB (and virtual ones), with probe results")
    async def list_boards(self, master: Master) -> list[UsbBoard]:
        return await boards_with_devices(master)

    @post("/probe", operation_id="probeUsbBoard", summary="Ask esptool about the chip on a port", status_code=200)
    async def probe(self, master: Master, data: ProbeRequest) -> UsbBoard:
        await master.usb.probe(data.port)
        return next(b for b in await boards_with_devices(master) if b.port == data.port)


class FirmwareController(Controller):
    path = "/api/firmware"
    tags = ["flashing"]

    @get("/", operation_id="listFirmware", summary="The base-image catalog")
    async def list_firmware(self, master: Master) -> list[FirmwareRead]:
        return await master.catalog.list()

    @get("/{firmware_id:int}", operation_id="getFirmware", summary="One catalog entry")
    async def get_firmware(self, master: Master, firmware_id: RowId) -> FirmwareRead:
        return await master.catalog.get(firmware_id, field="firmware_id")

    @post(
        "/",
        operation_id="addFirmware",
        request_max_body_size=MAX_UPLOAD,
        summary="Add a MicroPython image: the request body is the .bin file (application/octet-stream)",
    )
    async def add_firmware(self, master: Master, request: Request) -> Response[FirmwareRead]:
        data = await request.body()
        if not data:
            raise InvalidError("the request body must be the firmware file", field="file")
        entry, created = await master.catalog.add(data, source="user")
        return Response(entry, status_code=201 if created else 200)

    @post(
        "/fetch",
        operation_id="fetchFirmware",
        summary="Download an official MicroPython release (needs internet), checking its SHA-256",
    )
    async def fetch_firmware(self, master: Master, data: FirmwareFetch) -> Response[FirmwareRead]:
        entry, created = await master.catalog.fetch(data.chip, data.version, data.sha256, trust_https=data.trust_https)
        return Response(entry, status_code=201 if created else 200)


class FlashController(Controller):
    path = "/api/flash"
    tags = ["flashing"]

    @post(
        "/",
        operation_id="startFlash",
        status_code=202,
        summary="Flash & pair a USB board: base image + bundle, verify, reset (a job; poll GET /api/flash/{id})",
    )
    async def start(self, master: Master, data: FlashRequest) -> FlashJobRead:
        return await master.flashing.start(data)

    @get("/", operation_id="listFlashJobs", summary="Recent flash jobs, newest first")
    async def list_jobs(
        self, master: Master, limit: Annotated[int, Parameter(ge=1, le=200)] = 20
    ) -> list[FlashJobRead]:
        return await q.list_jobs(master.pool, limit)

    @get("/{job_id:str}", operation_id="getFlashJob", summary="A flash job: state, progress, error")
    async def get_job(self, master: Master, job_id: str) -> FlashJobRead:
        return await master.flashing.get(job_id)


CONTROLLERS = [BoardController, FirmwareController, FlashController]
