"""CoAP resource for the boards' live state: POST /s?ep=ID {"cap": NAME, "values": {...}} (docs/protocol.md,
"State"), sent by a board's agent when a capability's state changes (agent/state.py).

Thin adapter over devices.state: checks who speaks (the board's own OSCORE context, as for /t and /l) and that the
payload is a JSON object {cap, values}, and hands it to the service. Answers 2.04 with nothing, 4.04 for a board
the master does not know, 4.03 for one registered from another address, 4.00 for a malformed report (counted).
Never raises into the loop.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import aiocoap
import aiocoap.resource as resource
import msgspec
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from ..devices.state import StateService
from ..errors import InvalidError
from .resources import Guard, _bad, _query, peer, valid_ep

log = logging.getLogger(__name__)

MAX_REPORT = 1024  # a board's report is one small datagram


class State(resource.Resource):
    def __init__(self, states: StateService, counters: Counter, guard: Guard) -> None:
        super().__init__()
        self.states = states
        self.counters = counters
        self.guard = guard

    def _refuse(self, reason: str) -> aiocoap.Message:
        self.counters["state_refused"] += 1
        return _bad(reason)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        ep = _query(request).get("ep", "")
        if not valid_ep(ep):
            return self._refuse("ep: endpoint name missing or invalid")
        refused = self.guard.refusal(request, ep)
        if refused is not None:
            self.counters["state_refused"] += 1
            return refused
        if len(request.payload) > MAX_REPORT:
            return self._refuse(f"a state report is at most {MAX_REPORT} bytes")
        try:
            body = msgspec.json.decode(request.payload)
            cap, values = body["cap"], body["values"]
            if not isinstance(cap, str) or not isinstance(values, dict):
                raise TypeError("cap must be a string and values an object")
        except (msgspec.DecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            return self._refuse(f"state must be JSON {{cap, values}}: {exc}")
        address = peer(request)[0]
        try:
            outcome = await self.states.report(ep, address, cap, values)
        except InvalidError as exc:
            return self._refuse(f"{exc.field}: {exc.detail}")
        if outcome is None:
            self.counters["state"] += 1
            return aiocoap.Message(code=Code.CHANGED)
        self.counters["state_refused"] += 1
        unknown = outcome.startswith("unknown")
        log.log(logging.INFO if unknown else logging.WARNING, "state from %s refused: %s", address, outcome)
        code = Code.NOT_FOUND if unknown else Code.FORBIDDEN
        return aiocoap.Message(code=code, payload=outcome.encode(), content_format=ContentFormat.TEXT)


def attach(site: resource.Site, states: StateService, counters: Counter, paired: Callable[[str], bool]) -> None:
    site.add_resource(("s",), State(states, counters, Guard(paired, counters)))
