"""The dashboard's "USB boards" panel: boards on the Pi's USB, a Flash & pair form, live flash progress.

Layer: adapter (Litestar + htmx). The panel re-renders on the "boards" and "flash" server-sent events.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from ..errors import PifleetError
from ..master import Master
from ..storage import flashing as q
from ..storage import roles as roles_q
from .api import boards_with_devices
from .model import FlashRequest


async def _panel(master: Master, message: str | None = None, error: bool = False) -> Template:
    jobs = await q.list_jobs(master.pool, 5)
    return Template(
        "_boards.html",
        context={
            "boards": await boards_with_devices(master),
            "firmware": await master.catalog.list(),
            "roles": [r.name for r in await roles_q.list_roles(master.pool) if r.defined],
            "jobs": jobs,
            "busy": master.usb.busy,
            "message": message,
            "error": error,
        },
    )


class BoardPanelController(Controller):
    path = "/ui/boards"
    include_in_schema = False

    @get("/", operation_id="uiUsbBoards")
    async def panel(self, master: Master) -> Template:
        return await _panel(master)

    @post("/probe", operation_id="uiProbeUsbBoard", status_code=200)
    async def probe(
        self, master: Master, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
    ) -> Template:
        try:
            info = await master.usb.probe(data.get("port", ""))
        except PifleetError as exc:
            return await _panel(master, exc.detail, error=True)
        return await _panel(master, f"{data.get('port')}: {info.chip}, MAC {info.mac}")

    @post("/flash", operation_id="uiFlashUsbBoard", status_code=200)
    async def flash(
        self, master: Master, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
    ) -> Template:
        try:
            req = msgspec.convert(
                {
                    "port": data.get("port", ""),
                    "name": data.get("name", ""),
                    "role": data.get("role", ""),
                    "firmware": int(data["firmware"]) if data.get("firmware") else None,
                    "factory_reset": data.get("factory_reset") in ("on", "true", "1"),
                },
                FlashRequest,
            )
            job = await master.flashing.start(req)
        except msgspec.ValidationError as exc:
            return await _panel(master, f"invalid input: {exc}", error=True)
        except PifleetError as exc:
            return await _panel(master, exc.detail, error=True)
        return await _panel(master, f"flashing {job.port} as {job.name} …")
