"""JSON API of role modules: upload (checked by mpy-cross), list versions."""

from __future__ import annotations

from litestar import Controller, Response, get, post

from ...master import Master
from ...model import ModuleRead, ModuleUpload
from ...storage import modules as q


class ModuleController(Controller):
    path = "/api/modules"
    tags = ["modules"]

    @post(
        "/",
        operation_id="uploadModule",
        summary="Upload a role module; a compile error names its line",
        status_code=201,
    )
    async def upload(self, master: Master, data: ModuleUpload) -> Response[ModuleRead]:
        module, new = await master.modules.upload(data)
        if new:  # a new version goes to the boards whose role uses the module: one first, then the rest
            module.rollout = await master.sync.start_rollout(module)
        return Response(module, status_code=201 if new else 200)

    @get("/", operation_id="listModules", summary="Uploaded role modules, every version, newest first")
    async def list_modules(self, master: Master, name: str | None = None) -> list[ModuleRead]:
        return await q.list_modules(master.pool, name)
