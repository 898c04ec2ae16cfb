"""The Flashing page's "Over the air" part: start a firmware rollout (an OTA-capable image, to a role's boards or the
boards ticked) and follow the rollouts live, each board's state and transfer percentage.

Layer: adapter (Litestar + htmx). The form goes through the same service as POST /api/firmware/ID/rollouts
(`FirmwareRollouts.start`) and answers with the form again, with what happened or the refusal at its field. The
list (`/ui/firmware-rollouts`, the API's GET /api/firmware/rollouts) is drawn again on every `flash` server-sent
event: the rollout publishes one at each board's change of state and every 5 % of a transfer. The two are apart
so that a person's half-filled form is not redrawn under their fingers by a running transfer.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.response import Template

from ...auth.model import Principal
from ...devices.service import DeviceService
from ...errors import PifleetError
from ...flashing.catalog import Catalog
from ...flashing.model import FirmwareRolloutCreate
from ...flashing.rollout import FirmwareRollouts
from ...jobs.targets import PROCESS_KIND

SHOWN = 5  # rollouts in the list: the running ones, then the newest finished ones


class Services:
    """What the part shows and changes: one dependency for its handlers, built from the services'."""

    def __init__(self, firmware_rollouts: FirmwareRollouts, catalog: Catalog, device_service: DeviceService) -> None:
        self.rollouts, self.catalog, self.devices = firmware_rollouts, catalog, device_service


async def _form(
    s: Services, message: str | None = None, field: str | None = None, chosen: dict | None = None
) -> Template:
    boards = [d for d in await s.devices.list() if d.kind != PROCESS_KIND]
    chosen = chosen or {}
    return Template(
        "_firmware_rollout_form.html",
        context={
            "firmware": [f for f in await s.catalog.list() if f.ota],
            "roles": sorted({d.role for d in boards if d.role}),
            "boards": boards,
            "message": message,
            "error": field is not None,
            "field": field,
            "chosen": {
                "firmware": chosen.get("firmware", ""),
                "role": chosen.get("role") or "",
                "devices": set(chosen.get("devices") or ()),
            },
        },
    )


class FirmwareRolloutPanelController(Controller):
    path = "/ui/firmware-rollouts"
    include_in_schema = False
    dependencies = {"s": Provide(Services, sync_to_thread=False)}

    @get("/", operation_id="uiFirmwareRollouts")
    async def panel(self, s: Services) -> Template:
        return Template("_firmware_rollouts.html", context={"rollouts": await s.rollouts.recent(SHOWN)})

    @get("/form", operation_id="uiFirmwareRolloutForm")
    async def form(self, s: Services) -> Template:
        return await _form(s)

    @post("/", operation_id="uiStartFirmwareRollout", status_code=200)
    async def start(self, s: Services, principal: Principal, request: Request) -> Template:
        """The form's fields: firmware (a catalog id), and role or devices (one field per board ticked)."""
        form = await request.form()
        chosen = {
            "firmware": form.get("firmware") or "",
            "role": form.get("role") or None,
            "devices": [d for d in form.getall("devices", []) if d] or None,
        }
        if not str(chosen["firmware"]).isdigit():
            return await _form(s, "choose an OTA-capable image", "firmware", chosen)
        try:
            want = msgspec.convert({"role": chosen["role"], "devices": chosen["devices"]}, FirmwareRolloutCreate)
            rollout = await s.rollouts.start(
                int(chosen["firmware"]), role=want.role, devices=want.devices, by=principal.name
            )
        except msgspec.ValidationError as exc:
            return await _form(s, f"invalid input: {exc}", str(exc).rsplit("`$.", 1)[-1].split("`")[0], chosen)
        except PifleetError as exc:
            return await _form(s, exc.detail, exc.field or "", chosen)
        names = ", ".join(b.device for b in rollout.boards)
        return await _form(s, f"firmware rollout {rollout.id} started: MicroPython {rollout.version} to {names}")
