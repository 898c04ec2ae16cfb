"""JSON API of flashing: USB boards, probing, the base-image catalog, flash jobs.

Layer: adapter (Litestar). Thin: decode, call the flashing services (flash jobs, catalog, USB), return their
Structs.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from ...auth.model import Principal
from ...errors import BoardError, ConflictError, InvalidError
from ...flashing.catalog import Catalog
from ...flashing.model import (
    FirmwareFetch,
    FirmwareRead,
    FirmwareRolloutCreate,
    FirmwareRolloutRead,
    FlashJobRead,
    FlashRequest,
    ProbeRequest,
    UsbBoard,
)
from ...flashing.rollout import FirmwareRollouts
from ...flashing.service import FlashService
from ...flashing.usb import UsbWatcher
from ..contract import RawBody, problems

RowId = Annotated[int, Parameter(ge=1, le=2**31 - 1)]  # an id that fits its column (else 400)

MAX_UPLOAD = 16 * 1024 * 1024


class BoardController(Controller):
    path = "/api/boards"
    tags = ["flashing"]

    @get("/", operation_id="listUsbBoards", summary="Boards on the Pi's USB (and virtual ones), with probe results")
    async def list_boards(self, flashing: FlashService) -> list[UsbBoard]:
        return await flashing.boards()

    @post(
        "/probe",
        operation_id="probeUsbBoard",
        summary="Ask esptool about the chip on a port",
        status_code=200,
        opt=problems(BoardError),  # esptool found no chip there, or lost it
    )
    async def probe(self, usb: UsbWatcher, flashing: FlashService, data: ProbeRequest) -> UsbBoard:
        await usb.probe(data.port)
        return next(b for b in await flashing.boards() if b.port == data.port)


class FirmwareFile(RawBody):
    body_description = "A MicroPython image (.bin) for an ESP32 chip, at most 16 MiB"


class FirmwareController(Controller):
    path = "/api/firmware"
    tags = ["flashing"]

    @get("/", operation_id="listFirmware", summary="The base-image catalog")
    async def list_firmware(self, catalog: Catalog) -> list[FirmwareRead]:
        return await catalog.list()

    @get("/{firmware_id:int}", operation_id="getFirmware", summary="One catalog entry")
    async def get_firmware(self, catalog: Catalog, firmware_id: RowId) -> FirmwareRead:
        return await catalog.get(firmware_id, field="firmware_id")

    @post(
        "/",
        operation_id="addFirmware",
        request_max_body_size=MAX_UPLOAD,
        operation_class=FirmwareFile,
        responses={200: ResponseSpec(FirmwareRead, description="This image (same SHA-256) is in the catalog already")},
        summary="Add a MicroPython image: the request body is the .bin file (application/octet-stream)",
    )
    async def add_firmware(self, catalog: Catalog, request: Request) -> Response[FirmwareRead]:
        data = await request.body()
        if not data:
            raise InvalidError("the request body must be the firmware file", field="file")
        entry, created = await catalog.add(data, source="user")
        return Response(entry, status_code=201 if created else 200)

    @post(
        "/fetch",
        operation_id="fetchFirmware",
        responses={200: ResponseSpec(FirmwareRead, description="This image (same SHA-256) is in the catalog already")},
        summary="Download an official MicroPython release (needs internet), checking its SHA-256",
    )
    async def fetch_firmware(self, catalog: Catalog, data: FirmwareFetch) -> Response[FirmwareRead]:
        entry, created = await catalog.fetch(data.chip, data.version, data.sha256, trust_https=data.trust_https)
        return Response(entry, status_code=201 if created else 200)


class FirmwareRolloutController(Controller):
    path = "/api/firmware"
    tags = ["flashing"]

    @post(
        "/{firmware_id:int}/rollouts",
        operation_id="startFirmwareRollout",
        status_code=201,
        opt=problems(ConflictError),  # a board is in another running firmware rollout
        summary="Update MicroPython over the air on a role's boards or the boards named: one board, then waves",
    )
    async def start_rollout(
        self, firmware_rollouts: FirmwareRollouts, principal: Principal, firmware_id: RowId, data: FirmwareRolloutCreate
    ) -> FirmwareRolloutRead:
        return await firmware_rollouts.start(firmware_id, role=data.role, devices=data.devices, by=principal.name)

    @get(
        "/rollouts",
        operation_id="listFirmwareRollouts",
        summary="Firmware rollouts: the running ones, then the newest finished ones, each board's state",
    )
    async def list_rollouts(
        self, firmware_rollouts: FirmwareRollouts, limit: Annotated[int, Parameter(ge=1, le=100)] = 10
    ) -> list[FirmwareRolloutRead]:
        return await firmware_rollouts.recent(limit)

    @get(
        "/rollouts/{rollout_id:int}",
        operation_id="getFirmwareRollout",
        summary="A firmware rollout: its state and each board's (pending, transferring %, rebooting, confirming …)",
    )
    async def get_rollout(self, firmware_rollouts: FirmwareRollouts, rollout_id: RowId) -> FirmwareRolloutRead:
        return await firmware_rollouts.get(rollout_id)


class FlashController(Controller):
    path = "/api/flash"
    tags = ["flashing"]

    @post(
        "/",
        operation_id="startFlash",
        status_code=202,
        summary="Flash & pair a USB board: base image + bundle, verify, reset (a job; poll GET /api/flash/{id})",
    )
    async def start(self, flashing: FlashService, data: FlashRequest) -> FlashJobRead:
        return await flashing.start(data)

    @get("/", operation_id="listFlashJobs", summary="Recent flash jobs, newest first")
    async def list_jobs(
        self, flashing: FlashService, limit: Annotated[int, Parameter(ge=1, le=200)] = 20
    ) -> list[FlashJobRead]:
        return await flashing.jobs(limit)

    @get("/{job_id:str}", operation_id="getFlashJob", summary="A flash job: state, progress, error")
    async def get_job(self, flashing: FlashService, job_id: str) -> FlashJobRead:
        return await flashing.get(job_id)


CONTROLLERS = [BoardController, FirmwareController, FirmwareRolloutController, FlashController]
