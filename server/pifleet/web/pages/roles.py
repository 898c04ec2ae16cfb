"""The dashboard's roles panel: roles and their boards' sync state, applying a role, assigning it, uploading a
module (rolled out like an API upload), and recent rollouts. Each form answers with the panel itself."""

from __future__ import annotations

import json
import tomllib
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from ...devices.service import DeviceService
from ...errors import PifleetError
from ...model import ModuleUpload, RoleAssign, RoleSpec
from ...modules.rollouts import RolloutService
from ...roles.service import RoleService


class Services:
    """What the panel shows and changes: one dependency for its handlers, built from the services'."""

    def __init__(self, device_service: DeviceService, role_service: RoleService, rollouts: RolloutService) -> None:
        self.devices, self.roles, self.rollouts = device_service, role_service, rollouts


async def _panel(s: Services, message: str | None = None, error: bool = False) -> Template:
    devices = {d.name: d for d in await s.devices.list()}
    return Template(
        "_roles.html",
        context={
            "roles": await s.roles.list(),
            "devices": devices,
            "rollouts": await s.rollouts.list(5),
            "message": message,
            "error": error,
        },
    )


def _problem(exc: Exception) -> str:
    if isinstance(exc, PifleetError):
        return exc.detail + (f" (field: {exc.field})" if exc.field else "")
    return str(exc)


class RolePanelController(Controller):
    path = "/ui/roles"
    include_in_schema = False
    dependencies = {"s": Provide(Services, sync_to_thread=False)}

    @get("/", operation_id="uiRoles")
    async def panel(self, s: Services) -> Template:
        return await _panel(s)

    @post("/apply", operation_id="uiApplyRole", status_code=200)
    async def apply(
        self, s: Services, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
    ) -> Template:
        """The text of a role file (JSON or TOML, as `pifleet role apply` reads it)."""
        text = data.get("role", "")
        try:
            parsed: Any = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
            name = parsed.pop("name", "") if isinstance(parsed, dict) else ""
            if not name:
                raise ValueError("the role needs a name")
            role = await s.roles.apply(name, msgspec.convert(parsed, RoleSpec))
        except (ValueError, tomllib.TOMLDecodeError, msgspec.ValidationError, PifleetError) as exc:
            return await _panel(s, _problem(exc), error=True)
        return await _panel(s, f"role {role.name} applied; its boards are being brought in line")

    @post("/assign", operation_id="uiAssignRole", status_code=200)
    async def assign(
        self, s: Services, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
    ) -> Template:
        devices = [d.strip() for d in data.get("devices", "").replace(",", " ").split() if d.strip()]
        try:
            await s.roles.assign(data.get("role", ""), RoleAssign(devices=devices))
        except (PifleetError, msgspec.ValidationError) as exc:
            return await _panel(s, _problem(exc), error=True)
        return await _panel(s, f"role {data.get('role')} assigned to {', '.join(devices)}")

    @post("/modules", operation_id="uiUploadModule", status_code=200)
    async def upload(
        self, s: Services, data: Annotated[UploadFile, Body(media_type=RequestEncodingType.MULTI_PART)]
    ) -> Template:
        try:
            source = (await data.read()).decode()
            module, new = await s.rollouts.upload(ModuleUpload(filename=data.filename, source=source))
            rollout = module.rollout
        except (PifleetError, UnicodeDecodeError, msgspec.ValidationError) as exc:
            return await _panel(s, f"{data.filename}: {_problem(exc)}", error=True)
        said = f"rollout {rollout} started" if rollout else "no board's role uses it yet" if new else "unchanged"
        return await _panel(s, f"module {module.name} {module.declared.get('version')} ({module.stem}): {said}")
