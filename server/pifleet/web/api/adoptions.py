"""JSON API of adoption: boards waiting for a person to confirm the code on their console."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter

from ...devices.adoption import AdoptionService
from ...model import AdoptionConfirm, AdoptionRead

RowId = Annotated[int, Parameter(ge=1, le=2**31 - 1)]  # an id that fits its column (else 400)


class AdoptionController(Controller):
    path = "/api/adoptions"
    tags = ["adoption"]

    @get("/", operation_id="listAdoptions", summary="Boards waiting for adoption, and decided ones")
    async def list_adoptions(self, adoption: AdoptionService, pending: bool = False) -> list[AdoptionRead]:
        return await adoption.list(pending_only=pending)

    @post(
        "/{adoption_id:int}/confirm",
        operation_id="confirmAdoption",
        status_code=200,
        summary="Adopt a board: the code its console prints, and optionally its name and role",
    )
    async def confirm(self, adoption: AdoptionService, adoption_id: RowId, data: AdoptionConfirm) -> AdoptionRead:
        return await adoption.confirm(adoption_id, data.code, data.name, data.role)

    @post(
        "/{adoption_id:int}/reject",
        operation_id="rejectAdoption",
        status_code=200,
        summary="Refuse a board: it gets no identity (again after its reboots)",
    )
    async def reject(self, adoption: AdoptionService, adoption_id: RowId) -> AdoptionRead:
        return await adoption.reject(adoption_id)
