"""JSON API of role modules: upload (checked by mpy-cross), list versions."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from ...model import ModuleRead, ModuleUpload
from ...modules.builds import ModuleService
from ...modules.rollouts import RolloutService

ModuleName = Annotated[str | None, Parameter(max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]  # its file's name, no .py


class ModuleController(Controller):
    path = "/api/modules"
    tags = ["modules"]

    @post(
        "/",
        operation_id="uploadModule",
        summary="Upload a role module; a compile error names its line",
        status_code=201,
        responses={200: ResponseSpec(ModuleRead, description="This version (the same source) was uploaded before")},
    )
    async def upload(self, rollouts: RolloutService, data: ModuleUpload) -> Response[ModuleRead]:
        module, new = await rollouts.upload(data)  # a new version goes to the boards whose role uses the module
        return Response(module, status_code=201 if new else 200)

    @get("/", operation_id="listModules", summary="Uploaded role modules, every version, newest first")
    async def list_modules(self, module_service: ModuleService, name: ModuleName = None) -> list[ModuleRead]:
        return await module_service.list(name)
