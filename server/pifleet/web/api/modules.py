"""JSON API of role modules: upload (checked by mpy-cross), list versions."""

from __future__ import annotations

from litestar import Controller, Response, get, post

from ...model import ModuleRead, ModuleUpload
from ...modules.builds import ModuleService
from ...modules.rollouts import RolloutService


class ModuleController(Controller):
    path = "/api/modules"
    tags = ["modules"]

    @post(
        "/",
        operation_id="uploadModule",
        summary="Upload a role module; a compile error names its line",
        status_code=201,
    )
    async def upload(self, rollouts: RolloutService, data: ModuleUpload) -> Response[ModuleRead]:
        module, new = await rollouts.upload(data)  # a new version goes to the boards whose role uses the module
        return Response(module, status_code=201 if new else 200)

    @get("/", operation_id="listModules", summary="Uploaded role modules, every version, newest first")
    async def list_modules(self, module_service: ModuleService, name: str | None = None) -> list[ModuleRead]:
        return await module_service.list(name)
