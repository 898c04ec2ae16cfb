"""aiocoap's per-message work that the master repeats for every datagram, made cheaper with the same results.

Layer: gateway (aiocoap adapter, 0.4.17). Found with py-spy (--gil) on the master during tools/bench/module_push.py's
rollout of 50, where the master protects, sends, receives and unprotects about 1,200 OSCORE exchanges:

- `Message.copy` deep-copies the message's options (`copy.deepcopy` of every option object), and OSCORE copies each
  message it protects that way: 9 % of the master's CPU. aiocoap never changes an option object in place (setting
  an option replaces it), so a copy one level deep (new lists, the same option objects) is the same copy.
- `UDP6EndpointAddress` works out an address's plain text and whether it is multicast by parsing it with `ipaddress`
  for every message: 8 %. Both depend on the address alone, so they are kept for the addresses seen last.
"""

from __future__ import annotations

import functools
import ipaddress

from aiocoap.options import Options
from aiocoap.transports.udp6 import UDP6EndpointAddress

_ADDRESSES = 4096  # the addresses whose answers are kept (a fleet's boards and then some)


def _copy_options(self: Options, memo: dict) -> Options:
    new = Options.__new__(Options)
    new._options = {number: list(options) for number, options in self._options.items()}
    return new


@functools.lru_cache(maxsize=_ADDRESSES)
def _multicast(address: str) -> bool:
    return ipaddress.ip_address(address).is_multicast


def install() -> None:
    """Process-wide; idempotent."""
    if Options.__dict__.get("__deepcopy__") is _copy_options:
        return
    Options.__deepcopy__ = _copy_options  # type: ignore[attr-defined]
    strip = UDP6EndpointAddress.__dict__["_strip_v4mapped"].__func__
    UDP6EndpointAddress._strip_v4mapped = staticmethod(functools.lru_cache(maxsize=_ADDRESSES)(strip))
    UDP6EndpointAddress.is_multicast = property(lambda self: _multicast(self._plainaddress().split("%", 1)[0]))
    UDP6EndpointAddress.is_multicast_locally = property(lambda self: _multicast(self._plainaddress_local()))
