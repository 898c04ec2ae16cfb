"""CoAP resource for boards without an identity: POST /pair (docs/protocol.md, "Adoption").

Thin adapter over devices.adoption: decodes the announcement, maps the service's answer and errors to CoAP.
An unconfirmed board gets nothing but "waiting"; malformed requests get 4.00 and are never raised into the loop.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated

import aiocoap
import aiocoap.resource as resource
import msgspec
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from ..devices.adoption import POLL_S, AdoptionBusyError, AdoptionService, Announcement
from ..errors import PifleetError
from .resources import peer

log = logging.getLogger(__name__)

JSON = ContentFormat.JSON


# what PostgreSQL can store: text without NUL, an integer column
_Text = Annotated[str, msgspec.Meta(max_length=200, pattern="^[^\x00]*$")]


class PairRequest(msgspec.Struct):
    mac: _Text
    nonce: _Text
    proof: _Text
    chip: _Text = ""
    fw: _Text | None = None
    mpy: Annotated[int, msgspec.Meta(ge=0, lt=2**31)] | None = None
    agent: _Text | None = None


def _json(code: Code, body: dict, **kw) -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=msgspec.json.encode(body), content_format=JSON, **kw)


class Pairing(resource.Resource):
    """POST /pair: announce (and poll) as a board waiting for adoption."""

    def __init__(self, service: AdoptionService, counters: Counter) -> None:
        super().__init__()
        self.service = service
        self.counters = counters

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        address, port = peer(request)
        try:
            body = msgspec.json.decode(request.payload, type=PairRequest)
            nonce, proof = bytes.fromhex(body.nonce), bytes.fromhex(body.proof)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self.counters["pair_refused"] += 1
            log.warning("pairing request from %s refused: %s", address, exc)
            return _json(Code.BAD_REQUEST, {"error": f"malformed pairing request: {exc}"})
        try:
            announcement = Announcement(
                mac=body.mac.lower(),
                chip=body.chip,
                nonce=nonce,
                proof=proof,
                firmware=body.fw,
                mpy=body.mpy,
                agent_version=body.agent,
            )
            state, sealed = await self.service.announce(announcement, address, port)
        except AdoptionBusyError as exc:
            return _json(Code.SERVICE_UNAVAILABLE, {"error": exc.detail}, max_age=60)
        except PifleetError as exc:
            self.counters["pair_refused"] += 1
            log.warning("pairing request from %s refused: %s", address, exc.detail)
            return _json(Code.BAD_REQUEST, {"error": exc.detail, "field": exc.field})
        self.counters["pair_requests"] += 1
        if state == "adopted":
            return _json(Code.CHANGED, {"state": state, **sealed})
        if state in ("rejected", "locked"):
            return _json(Code.FORBIDDEN, {"state": state})
        return _json(Code.CHANGED, {"state": state, "poll": POLL_S})

    def get_link_description(self):
        return {"rt": "pifleet.pair", "ct": str(int(JSON))}


def attach(site: resource.Site, service: AdoptionService, counters: Counter) -> None:
    site.add_resource(("pair",), Pairing(service, counters))
