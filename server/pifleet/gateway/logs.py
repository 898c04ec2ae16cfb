"""CoAP resource for what the boards print: POST /l?ep=ID[&lost=N] (docs/protocol.md, "Logs from the boards").

Thin adapter over devices.logs: checks who speaks (the board's own OSCORE context, as for /t), that the payload is
text (Content-Format 0), and hands the bytes to the service. Answers 2.04 with nothing, 4.04 for a board the master
does not know, 4.03 for one registered from another address, 4.00 for a malformed request (counted), 4.13 for a
batch larger than a board ever sends. Never raises into the loop.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from ..devices.logs import MAX_BATCH, BoardLogs
from .resources import Guard, _bad, _query, peer, valid_ep

log = logging.getLogger(__name__)

TEXT = ContentFormat.TEXT  # 0: text/plain; charset=utf-8


class Logs(resource.Resource):
    def __init__(self, logs: BoardLogs, counters: Counter, guard: Guard) -> None:
        super().__init__()
        self.logs = logs
        self.counters = counters
        self.guard = guard

    def _refuse(self, reason: str) -> aiocoap.Message:
        self.counters["logs_refused"] += 1
        return _bad(reason)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        query = _query(request)
        ep = query.get("ep", "")
        if not valid_ep(ep):
            return self._refuse("ep: endpoint name missing or invalid")
        refused = self.guard.refusal(request, ep)
        if refused is not None:
            self.counters["logs_refused"] += 1
            return refused
        lost = query.get("lost", "0")
        if not (lost.isascii() and lost.isdigit() and len(lost) <= 12):
            return self._refuse("lost: must be a number of bytes")
        if request.opt.content_format not in (None, TEXT):
            return self._refuse("payload must be text/plain; charset=utf-8 (ct=0)")
        if len(request.payload) > MAX_BATCH:
            self.counters["logs_refused"] += 1
            answer = aiocoap.Message(code=Code.REQUEST_ENTITY_TOO_LARGE, payload=f"at most {MAX_BATCH} bytes".encode())
            answer.opt.size1 = MAX_BATCH  # RFC 7959 §4: the largest body the resource takes
            return answer
        address = peer(request)[0]
        outcome = await self.logs.receive(ep, address, request.payload, int(lost))
        if outcome is None:
            self.counters["logs"] += 1
            return aiocoap.Message(code=Code.CHANGED)
        self.counters["logs_refused"] += 1
        unknown = outcome.startswith("unknown")
        # a board that prints before its registration is answered (it keeps the lines and sends them again)
        # but is no misbehaving peer; one speaking from another address than it registered from is
        log.log(logging.INFO if unknown else logging.WARNING, "log batch from %s refused: %s", address, outcome)
        code = Code.NOT_FOUND if unknown else Code.FORBIDDEN
        return aiocoap.Message(code=code, payload=outcome.encode(), content_format=TEXT)


def attach(site: resource.Site, logs: BoardLogs, counters: Counter, paired: Callable[[str], bool]) -> None:
    site.add_resource(("l",), Logs(logs, counters, Guard(paired, counters)))
