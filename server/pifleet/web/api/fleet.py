"""JSON API of the fleet: devices, their readings, groups (roles: web/api/roles.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, delete, get, post, put
from litestar.params import Parameter

from ...errors import ConflictError, InvalidError, NotFoundError
from ...master import Master
from ...model import DeviceRead, GroupRead, GroupWrite, ReadingRead
from ...storage import devices as q

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DeviceController(Controller):
    path = "/api/devices"
    tags = ["devices"]

    @get("/", operation_id="listDevices", summary="All boards and processes, with online state")
    async def list_devices(self, master: Master) -> list[DeviceRead]:
        return await q.list_devices(master.pool)

    @get("/{name:str}", operation_id="getDevice", summary="One device by name")
    async def get_device(self, master: Master, name: str) -> DeviceRead:
        device = await q.get_by_name(master.pool, name)
        if device is None:
            raise NotFoundError(f"no device named {name!r}", field="name")
        return device

    @post(
        "/{name:str}/sync",
        operation_id="syncDevice",
        status_code=200,
        summary="Bring a board in line with its role now (push missing modules, switch); answers the outcome",
    )
    async def sync_device(self, master: Master, name: str) -> DeviceRead:
        device = await q.get_by_name(master.pool, name)
        if device is None:
            raise NotFoundError(f"no device named {name!r}", field="name")
        await master.sync.sync(device.id)
        return await q.get_by_id(master.pool, device.id) or device

    @get(
        "/{name:str}/modules",
        operation_id="listDeviceModules",
        summary="The module files a board holds now and its free space (asked from the board)",
    )
    async def device_modules(self, master: Master, name: str) -> dict[str, Any]:
        device = await q.get_by_name(master.pool, name)
        if device is None:
            raise NotFoundError(f"no device named {name!r}", field="name")
        if not device.online or device.address is None or device.port is None:
            raise ConflictError(f"device {name!r} is offline", field="name")
        return await master.gateway.modules(device.address, device.port)

    @post(
        "/{name:str}/revoke",
        operation_id="revokeDevice",
        status_code=200,
        summary="Revoke a board: its keys are forgotten and it is refused at once; flash or adopt it to pair again",
    )
    async def revoke_device(self, master: Master, name: str) -> DeviceRead:
        device = await q.get_by_name(master.pool, name)
        if device is None:
            raise NotFoundError(f"no device named {name!r}", field="name")
        await master.pairing.revoke(device.id)
        return await q.get_by_id(master.pool, device.id) or device

    @get("/{name:str}/readings", operation_id="listReadings", summary="Sensor readings the master took, newest first")
    async def list_readings(
        self, master: Master, name: str, limit: Annotated[int, Parameter(ge=1, le=1000)] = 100
    ) -> list[ReadingRead]:
        return await q.readings(master.pool, name, limit)


class GroupController(Controller):
    path = "/api/groups"
    tags = ["groups"]

    @get("/", operation_id="listGroups", summary="Named groups of devices (job targets)")
    async def list_groups(self, master: Master) -> list[GroupRead]:
        return await q.list_groups(master.pool)

    @put("/{name:str}", operation_id="putGroup", summary="Create or replace a group")
    async def put_group(self, master: Master, name: str, data: GroupWrite) -> GroupRead:
        if not NAME.match(name):
            raise InvalidError("a group name is letters, digits, '-', '_' and '.'", field="name")
        known = {d.name for d in await q.list_devices(master.pool)}
        for i, device in enumerate(data.devices):
            if device not in known:
                raise InvalidError(f"no device named {device!r}", field=f"devices[{i}]")
        return await q.put_group(master.pool, name, list(dict.fromkeys(data.devices)))

    @delete("/{name:str}", operation_id="deleteGroup", summary="Delete a group")
    async def delete_group(self, master: Master, name: str) -> None:
        if not await q.delete_group(master.pool, name):
            raise NotFoundError(f"no group named {name!r}", field="name")
