"""JSON API of roles (modules, their configuration, the role's jobs), role assignment and module rollouts."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import Parameter

from ...devices.service import NAME
from ...errors import InvalidError
from ...model import DeviceRead, RoleAssign, RoleRead, RoleSpec, RolloutRead
from ...modules.rollouts import RolloutService
from ...roles.service import RoleService

RowId = Annotated[int, Parameter(ge=1, le=2**31 - 1)]  # an id that fits its column (else 400)


class RoleController(Controller):
    path = "/api/roles"
    tags = ["roles"]

    @get("/", operation_id="listRoles", summary="Roles: their modules and configuration, jobs and boards")
    async def list_roles(self, role_service: RoleService) -> list[RoleRead]:
        return await role_service.list()

    @get("/{name:str}", operation_id="getRole", summary="One role")
    async def get_role(self, role_service: RoleService, name: str) -> RoleRead:
        return await role_service.get(name)

    @put(
        "/{name:str}",
        operation_id="applyRole",
        summary="Create or replace a role; its boards are brought in line in the background",
    )
    async def apply_role(self, role_service: RoleService, name: str, data: RoleSpec) -> RoleRead:
        if not NAME.match(name):
            raise InvalidError("a role name is letters, digits, '-', '_' and '.'", field="name")
        return await role_service.apply(name, data)

    @post(
        "/{name:str}/assign",
        operation_id="assignRole",
        status_code=200,
        summary="Give boards this role (and their own configuration); they are synced in the background",
    )
    async def assign_role(self, role_service: RoleService, name: str, data: RoleAssign) -> list[DeviceRead]:
        # each board once, however often the list names it (1000 times the same name kept a request busy 10 s)
        unique = msgspec.structs.replace(data, devices=list(dict.fromkeys(data.devices)))
        return await role_service.assign(name, unique)

    @delete("/{name:str}", operation_id="deleteRole", summary="Delete a role and its jobs; its boards keep running")
    async def delete_role(self, role_service: RoleService, name: str) -> None:
        await role_service.delete(name)


class RolloutController(Controller):
    path = "/api/rollouts"
    tags = ["modules"]

    @get("/", operation_id="listRollouts", summary="Module rollouts, newest first")
    async def list_rollouts(
        self, rollouts: RolloutService, limit: Annotated[int, Parameter(ge=1, le=500)] = 50
    ) -> list[RolloutRead]:
        return await rollouts.list(limit)

    @get("/{rollout_id:int}", operation_id="getRollout", summary="One rollout: done, skipped, where it halted")
    async def get_rollout(self, rollouts: RolloutService, rollout_id: RowId) -> RolloutRead:
        return await rollouts.get(rollout_id)
