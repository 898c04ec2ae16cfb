"""JSON API of the fleet: devices, their readings, groups (roles: web/api/roles.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, delete, get, post, put
from litestar.params import Parameter

from ...devices.service import DeviceService
from ...errors import BoardError, ConflictError
from ...model import DeviceRead, GroupRead, GroupWrite, ReadingRead, ReadingsRange, StateRead
from ..contract import problems

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
BUCKETS = 240  # at most this many buckets per series (the charts draw one point each)


class DeviceController(Controller):
    path = "/api/devices"
    tags = ["devices"]

    @get("/", operation_id="listDevices", summary="All boards and processes, with online state")
    async def list_devices(self, device_service: DeviceService) -> list[DeviceRead]:
        return await device_service.list()

    @get("/{name:str}", operation_id="getDevice", summary="One device by name, with its live state")
    async def get_device(self, device_service: DeviceService, name: str) -> DeviceRead:
        return await device_service.one(name)

    @get(
        "/{name:str}/state",
        operation_id="getDeviceState",
        summary="The live state of each capability (position, on/off, last values), as the board last reported it",
    )
    async def get_device_state(self, device_service: DeviceService, name: str) -> dict[str, StateRead]:
        """Boards report a capability's state as it changes (a blind's position every half second while it
        moves); each change also comes on GET /api/events as a `state` event."""
        return await device_service.state(name)

    @post(
        "/{name:str}/sync",
        operation_id="syncDevice",
        status_code=200,
        opt=problems(BoardError),
        summary="Bring a board in line with its role now (push missing modules, switch); answers the outcome",
    )
    async def sync_device(self, device_service: DeviceService, name: str) -> DeviceRead:
        return await device_service.sync(name)

    @get(
        "/{name:str}/modules",
        operation_id="listDeviceModules",
        opt=problems(ConflictError, BoardError),
        summary="The module files a board holds now and its free space (asked from the board)",
    )
    async def device_modules(self, device_service: DeviceService, name: str) -> dict[str, Any]:
        return await device_service.modules(name)

    @get(
        "/{name:str}/stats",
        operation_id="getDeviceStats",
        opt=problems(ConflictError, BoardError),
        summary="What the board reports of itself now: heap used and free, uptime, datagram counters",
    )
    async def device_stats(self, device_service: DeviceService, name: str) -> dict[str, Any]:
        return await device_service.stats(name)

    @post(
        "/{name:str}/restart",
        operation_id="restartDevice",
        status_code=202,
        opt=problems(ConflictError, BoardError),
        summary="Restart a board: it sets its outputs safe and resets, and is back online once it registered again",
    )
    async def restart_device(self, device_service: DeviceService, name: str) -> DeviceRead:
        return await device_service.restart(name)

    @post(
        "/{name:str}/revoke",
        operation_id="revokeDevice",
        status_code=200,
        summary="Revoke a board: its keys are forgotten and it is refused at once; flash or adopt it to pair again",
    )
    async def revoke_device(self, device_service: DeviceService, name: str) -> DeviceRead:
        return await device_service.revoke(name)

    @get(
        "/{name:str}/readings",
        operation_id="listReadings",
        summary="Readings the boards reported: the newest, or with ?range=24h|7d|30d each series downsampled",
    )
    async def list_readings(
        self,
        device_service: DeviceService,
        name: str,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        range: Literal["24h", "7d", "30d"] | None = None,  # noqa: A002 — the query parameter's name
        capability: Annotated[str | None, Parameter(max_length=64)] = None,
        path: Annotated[str | None, Parameter(max_length=128)] = None,
    ) -> list[ReadingRead] | ReadingsRange:
        """Without `range`: the newest `limit` readings, newest first. With `range`: every series (or the one named
        by `capability` and `path`) over the last 24 hours, 7 or 30 days as at most 240 buckets of equal width, each
        with count, min, max and avg (the dashboard's charts use the same query), and the unit its module declares;
        a bucket without readings is absent (the board was offline)."""
        if range is None:
            return await device_service.readings(name, limit)
        span = RANGES[range]
        until = datetime.now().astimezone()
        return await device_service.downsampled(name, range, span, until, BUCKETS, capability, path)


class GroupController(Controller):
    path = "/api/groups"
    tags = ["groups"]

    @get("/", operation_id="listGroups", summary="Named groups of devices (job targets)")
    async def list_groups(self, device_service: DeviceService) -> list[GroupRead]:
        return await device_service.groups()

    @put("/{name:str}", operation_id="putGroup", summary="Create or replace a group")
    async def put_group(self, device_service: DeviceService, name: str, data: GroupWrite) -> GroupRead:
        return await device_service.put_group(name, data.devices)

    @delete("/{name:str}", operation_id="deleteGroup", summary="Delete a group")
    async def delete_group(self, device_service: DeviceService, name: str) -> None:
        await device_service.delete_group(name)
