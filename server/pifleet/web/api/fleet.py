"""JSON API of the fleet: devices and roles."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from ...errors import NotFoundError
from ...master import Master
from ...model import DeviceRead, ReadingRead, RoleRead
from ...storage import devices as q


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


    @get("/{name:str}/readings", operation_id="listReadings", summary="Sensor readings the master took, newest first")
    async def list_readings(self, master: Master, name: str,
                            limit: Annotated[int, Parameter(ge=1, le=1000)] = 100) -> list[ReadingRead]:
        return await q.readings(master.pool, name, limit)


class RoleController(Controller):
    path = "/api/roles"
    tags = ["roles"]

    @get("/", operation_id="listRoles", summary="Roles known to the master")
    async def list_roles(self, master: Master) -> list[RoleRead]:
        return await q.list_roles(master.pool)
