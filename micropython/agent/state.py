"""A capability's live state, sent to the master as it changes: POST /s?ep=ID {"cap", "values"} (docs/protocol.md).

Layer: device side, application. A capability that declares STATE calls changed(NAME, read, live) when its state
changes (capabilities/board/blind.py, relay.py); read is the capability's own command that answers its STATE
(blind.position, relay.state), so the reporting costs a capability no code of its own. This module is loaded by
that call and forgotten once nothing is left to send: a board whose blind stands still holds none of this code,
and a capability's STATE declaration is dropped at load (agent/caps.py), the master reads it from the source.

One sender task sends the newest state of each capability that changed, then waits _EVERY_MS: a burst of changes
costs one report per capability per period (the throttle), and the values are read when they are sent, so they
are never older than that. A capability in motion (live) is read and sent again every period until it reports
that it stopped, so the master sees a blind's position fall while its motor runs. Nothing queues beyond one
entry per capability: a report that cannot be delivered is dropped (counted in /stats as state_lost); the next
change sends the whole state again. Without an agent (a capability under test) or a registration, nothing is sent.
"""

import asyncio
import json

from agent import coap, port
from agent.endpoint import RequestError
from agent.port import const, forget, print_exception, sleep_ms

# CoAP numbers (RFC 7252), inlined
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_JSON = const(50)
_POST = const(2)
_URI_PATH = const(11)
_URI_QUERY = const(15)

_EVERY_MS = const(500)  # at most one report per capability this often; a moving blind is reported this often

_changed = {}  # capability name -> (read, live), until sent
_task = None


def changed(name, read, live=False):
    """Capability `name` changed: `await read()` gives its STATE values, read when sent. live: send them again
    every _EVERY_MS until the capability calls changed(name, read, False) (its motion ended)."""
    global _task
    agent = port.AGENT
    if agent is None:
        forget("state")  # at boot (before the agent exists) or under test: nothing to send, nothing kept
        return
    _changed[name] = (read, live)
    if _task is None:
        _task = asyncio.create_task(_send(agent))


async def _send(agent):
    global _task
    registration = agent.registration
    stats = agent.endpoint.stats
    options = coap.path_options(_URI_PATH, "s") + [
        (_CONTENT_FORMAT, coap.uint(_JSON)),
        (_URI_QUERY, ("ep=" + agent.device_id).encode()),
    ]
    try:
        while _changed:
            for name in list(_changed):
                read, live = _changed[name]
                if not live:
                    del _changed[name]  # a change while it is sent adds it again
                try:
                    body = json.dumps({"cap": name, "values": await read()}).encode()
                    if registration.location is None:
                        raise RequestError("not registered")
                    response = await agent.endpoint.request(registration.master, _POST, options, body)
                    if response.code != _CHANGED:
                        raise RequestError(coap.code_str(response.code))
                    stats["state"] = stats.get("state", 0) + 1
                except RequestError:
                    stats["state_lost"] = stats.get("state_lost", 0) + 1
                except Exception as exc:  # noqa: BLE001 — a capability's read() failed: its next change may not
                    print_exception(exc)
            await sleep_ms(_EVERY_MS)
    finally:
        _task = None
        forget("state")  # the next change loads it again
