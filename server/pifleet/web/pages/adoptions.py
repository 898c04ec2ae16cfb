"""The dashboard's adoption panel: boards waiting for adoption, with a form for the code on their console."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from ...devices.adoption import AdoptionService
from ...errors import PifleetError


async def _panel(adoption: AdoptionService, message: str | None = None, error: bool = False) -> Template:
    items = [a for a in await adoption.list() if a.state in ("waiting", "locked") or a.delivered_at is None]
    return Template("_adoptions.html", context={"adoptions": items, "message": message, "error": error})


class AdoptionPanelController(Controller):
    path = "/ui/adoptions"
    include_in_schema = False

    @get("/", operation_id="uiAdoptions")
    async def panel(self, adoption: AdoptionService) -> Template:
        return await _panel(adoption)

    @post("/{adoption_id:int}/confirm", operation_id="uiConfirmAdoption", status_code=200)
    async def confirm(
        self,
        adoption: AdoptionService,
        adoption_id: int,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template:
        try:
            adopted = await adoption.confirm(
                adoption_id, data.get("code", ""), data.get("name") or None, data.get("role") or None
            )
        except PifleetError as exc:
            return await _panel(adoption, exc.detail, error=True)
        return await _panel(adoption, f"adopted as {adopted.device_id}; the board fetches its identity now")

    @post("/{adoption_id:int}/reject", operation_id="uiRejectAdoption", status_code=200)
    async def reject(self, adoption: AdoptionService, adoption_id: int) -> Template:
        try:
            await adoption.reject(adoption_id)
        except PifleetError as exc:
            return await _panel(adoption, exc.detail, error=True)
        return await _panel(adoption, "rejected")
