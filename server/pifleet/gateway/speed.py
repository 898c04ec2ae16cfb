"""aiocoap's per-message work that the master repeats for every datagram, made cheaper with the same results.

Layer: gateway (aiocoap adapter, 0.4.17). Found with py-spy (--gil) on the master during tools/bench/module_push.py's
rollout of 50, where the master protects, sends, receives and unprotects about 1,200 OSCORE exchanges:

- `Message.copy` deep-copies the message's options (`copy.deepcopy` of every option object), and OSCORE copies each
  message it protects that way: 9 % of the master's CPU. aiocoap never changes an option object in place (setting
  an option replaces it), so a copy one level deep (new lists, the same option objects) is the same copy.
- `TransportOSCORE` sends each protected request through its wire context's block-wise layer: a task named with
  the message's repr, and a runner that only waits for the one answer: 8 % (`whole_protected_requests`, below).
- `UDP6EndpointAddress` works out an address's plain text and whether it is multicast by parsing it with `ipaddress`
  for every message: 8 %. Both depend on the address alone, so they are kept for the addresses seen last.
"""

from __future__ import annotations

import functools
import ipaddress

from aiocoap.options import Options
from aiocoap.transports.oscore import TransportOSCORE
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


class _WholeDatagrams:
    """An OSCORE transport's wire: each protected request goes out as one datagram, without outer block-wise.

    Our boards and the master split what is large inside OSCORE (inner block-wise, RFC 8613 §4.1.3.4.1; the
    gateway's module blocks); outer block-wise is for proxies that fragment protected messages (§4.1.3.4.2), and
    none stands between the Pi and its boards. A board could not take outer blocks anyway: it reads one datagram
    of up to 1,280 bytes and unprotects it whole, so a protected request over aiocoap's 1,124-byte threshold (a
    long query beside a full block) went unanswered before.
    """

    __slots__ = ("_context", "loop")

    def __init__(self, context) -> None:
        self._context = context
        self.loop = context.loop

    def request(self, message):
        if isinstance(message.remote, UDP6EndpointAddress):
            # resolved (a board's answer said where it is): aiocoap's task hands the request on in its first step,
            # before anything scheduled later can cancel it
            return self._context.request(message, handle_blockwise=False)
        return _Resolving(self._context, message)


class _Resolving:
    """A protected request whose address is resolved before the request is made, as aiocoap's block-wise layer
    does. A plain request's own task would resolve it after (in a worker thread): one given up meanwhile (its
    OSCORE task cancelled) ended its pipe before that task handed it on, which then failed inside aiocoap ("Task
    exception was never retrieved")."""

    __slots__ = ("response", "observation", "_task")

    def __init__(self, context, message) -> None:
        self.response = context.loop.create_future()
        self.observation = None  # the master observes nothing on its boards
        self._task = context.loop.create_task(self._run(context, message), name="protected request")
        self.response.add_done_callback(self._given_up)

    async def _run(self, context, message) -> None:
        try:
            await context.find_remote_and_interface(message)
            answer = await context.request(message, handle_blockwise=False).response
        except Exception as exc:  # noqa: BLE001 — the OSCORE transport awaiting the response gets it
            if not self.response.done():
                self.response.set_exception(exc)
            return
        if not self.response.done():
            self.response.set_result(answer)

    def _given_up(self, response) -> None:
        if response.cancelled():
            self._task.cancel()


def whole_protected_requests(context) -> None:
    """Give the context's OSCORE transport a wire that sends protected requests whole (idempotent)."""
    for interface in context.request_interfaces:
        if isinstance(interface, TransportOSCORE) and not isinstance(interface._wire, _WholeDatagrams):
            interface._wire = _WholeDatagrams(interface._wire)
