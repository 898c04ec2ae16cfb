"""A board's address is resolved once, not for every request: aiocoap (0.4.17) resolves each request's host anew.

Layer: gateway (aiocoap adapter). Nothing here decides anything about boards.

The master talks to a board at the IP address it registered from. aiocoap's UDP transport still runs getaddrinfo
for every request — in a worker thread, so each request also hands over to that thread and back — and opens a
socket to check the route. For a module pushed in 21 protected blocks that was about a quarter of the master's
CPU per block (tools/bench/module_push.py --rollout). An IP address literal resolves to itself for good, so its
result is kept per (host, port); a host name is resolved each time, as before.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiocoap.transports.udp6 import MessageInterfaceUDP6
from aiocoap.util import hostportsplit

_KEPT = 4096  # addresses kept at most (a fleet's boards); the whole table starts again past that


def resolve_literals_once(context: Any) -> None:
    """Keep what this context's UDP transport resolved for IP address literals."""
    for interface in context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        if isinstance(messages, MessageInterfaceUDP6):
            messages.determine_remote = _kept(messages.determine_remote)


def _literal(request: Any) -> bool:
    if request.unresolved_remote is not None:
        host = hostportsplit(request.unresolved_remote)[0]
    else:
        host = request.opt.uri_host or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _kept(determine_remote):
    known: dict[tuple, Any] = {}

    async def determine(request: Any) -> Any:
        key = (request.requested_scheme, request.unresolved_remote, request.opt.uri_host, request.opt.uri_port)
        remote = known.get(key)
        if remote is None:
            remote = await determine_remote(request)
            if remote is not None and _literal(request):
                if len(known) >= _KEPT:
                    known.clear()
                known[key] = remote
        return remote

    return determine
