"""The dashboard's "USB boards" panel: boards on the Pi's USB, a Flash & pair form, live flash progress.

Layer: adapter (Litestar + htmx). The panel re-renders on the "boards" and "flash" server-sent events.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from ...errors import PifleetError
from ...flashing.catalog import Catalog
from ...flashing.model import FlashRequest
from ...flashing.service import FlashService
from ...flashing.usb import UsbWatcher
from ...roles.service import RoleService


class Services:
    """What the panel shows and changes: one dependency for its handlers, built from the services'."""

    def __init__(self, flashing: FlashService, catalog: Catalog, usb: UsbWatcher, role_service: RoleService) -> None:
        self.flashing, self.catalog, self.usb, self.roles = flashing, catalog, usb, role_service


async def _panel(s: Services, message: str | None = None, error: bool = False, name: str = "") -> Template:
    jobs = await s.flashing.jobs(5)
    return Template(
        "_boards.html",
        context={
            "boards": await s.flashing.boards(),
            "firmware": await s.catalog.list(),
            "roles": [r.name for r in await s.roles.list() if r.defined],
            "jobs": jobs,
            "busy": s.usb.busy,
            "message": message,
            "error": error,
            "name": name,  # a board's name to fill in (the board page's "Flash again")
        },
    )


class BoardPanelController(Controller):
    path = "/ui/boards"
    include_in_schema = False
    dependencies = {"s": Provide(Services, sync_to_thread=False)}

    @get("/", operation_id="uiUsbBoards")
    async def panel(self, s: Services, name: str | None = None) -> Template:
        return await _panel(s, name=name or "")

    @post("/probe", operation_id="uiProbeUsbBoard", status_code=200)
    async def probe(
        self, s: Services, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
    ) -> Template:
        try:
            info = await s.usb.probe(data.get("port", ""))
        except PifleetError as exc:
            return await _panel(s, exc.detail, error=True)
        return await _panel(s, f"{data.get('port')}: {info.chip}, MAC {info.mac}")

    @post("/flash", operation_id="uiFlashUsbBoard", status_code=200)
    async def flash(
        self, s: Services, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
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
            job = await s.flashing.start(req)
        except msgspec.ValidationError as exc:
            return await _panel(s, f"invalid input: {exc}", error=True)
        except PifleetError as exc:
            return await _panel(s, exc.detail, error=True)
        return await _panel(s, f"flashing {job.port} as {job.name} …")
