"""CoAP resources of the master: the registration directory (/rd, in the style of RFC 9176) and
/.well-known/core. Malformed requests are answered 4.00 and counted, never raised into the loop."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

import aiocoap
import aiocoap.resource as resource
import msgspec
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from ..devices.registry import MAX_LIFETIME_S, MIN_LIFETIME_S, Registry
from ..errors import InvalidError

log = logging.getLogger(__name__)

LINK_FORMAT = ContentFormat.LINKFORMAT
_TEXT = ContentFormat.TEXT


def _bad(reason: str) -> aiocoap.Message:
    return aiocoap.Message(code=Code.BAD_REQUEST, payload=reason.encode(), content_format=_TEXT)


def _transport(remote):
    return getattr(remote, "underlying_address", remote)  # an OSCORE request: the UDP address under it


def sender(request: aiocoap.Message) -> str | None:
    """The device whose OSCORE context verified this request, or None for an unprotected request."""
    context = getattr(request.remote, "security_context", None)
    return getattr(context, "device_id", None)


def peer(request: aiocoap.Message) -> tuple[str, int]:
    """The sender's IP address and port (IPv4-mapped addresses shown as plain IPv4)."""
    remote = _transport(request.remote)
    host, port = remote.sockaddr[0], remote.sockaddr[1]
    if host.startswith("::ffff:"):
        host = host[len("::ffff:") :]
    return host, port


def _query(request: aiocoap.Message) -> dict[str, str]:
    out = {}
    for item in request.opt.uri_query:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _lifetime(query: dict[str, str]) -> int | None | bool:
    """An update's lifetime: None when it names none, False when it is not a valid one."""
    if "lt" not in query:
        return None
    try:
        lifetime = int(query["lt"])
    except ValueError:
        return False
    return lifetime if MIN_LIFETIME_S <= lifetime <= MAX_LIFETIME_S else False


def _links(request: aiocoap.Message, required: bool = False) -> str:
    """The links a registration (or an update, `required`: its Content-Format must say so) carries; ValueError
    saying why they cannot be stored."""
    if request.opt.content_format != LINK_FORMAT and (required or request.opt.content_format is not None):
        raise ValueError("payload must be link-format (ct=40)")
    try:
        links = request.payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8 link-format") from None
    if "\x00" in links:
        raise ValueError("payload: NUL characters")
    return links


def valid_ep(ep: str) -> bool:
    return 0 < len(ep) <= 63 and all(c.isalnum() or c in "-_." for c in ep)


def text_problem(query: dict[str, str]) -> str | None:
    """Why query values cannot be stored as text (PostgreSQL takes no NUL), or None."""
    bad = sorted(k for k, v in query.items() if "\x00" in v or len(v) > 255)
    return f"{', '.join(bad)}: NUL characters or longer than 255" if bad else None


class Guard:
    """Who may speak for a board: only the board itself, through its own OSCORE context (docs/security.md).

    A board gets its context by being paired: flashed from this master, or adopted (a person confirmed the
    code on its console). An unprotected request speaks for no one: registration, its updates and telemetry
    are refused without OSCORE, whether the master knows the endpoint name or not."""

    def __init__(self, paired: Callable[[str], bool], counters: Counter) -> None:
        self.paired = paired
        self.counters = counters

    def refusal(self, request: aiocoap.Message, ep: str) -> aiocoap.Message | None:
        """None if the request may speak for `ep`; else the answer refusing it (logged and counted)."""
        who = sender(request)
        if who is None and self.paired(ep):
            reason, code = f"board {ep} is paired: OSCORE required", Code.UNAUTHORIZED
        elif who is None:
            reason, code = f"board {ep} is not paired: flash it from this master or adopt it", Code.UNAUTHORIZED
        elif who != ep:
            reason, code = f"board {who} claims to be {ep}", Code.FORBIDDEN
        else:
            return None
        self.counters["oscore_refused"] += 1
        log.warning("refused a request from %s:%d: %s", *peer(request), reason)
        return aiocoap.Message(code=code, payload=reason.encode(), content_format=_TEXT, max_age=0)


class Directory(resource.Resource):
    """POST /rd registers (RFC 9176 §5.3)."""

    def __init__(self, registry: Registry, counters: Counter, guard: Guard) -> None:
        super().__init__()
        self.registry = registry
        self.counters = counters
        self.guard = guard

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return await self._register(request)

    def _refuse(self, reason: str, request: aiocoap.Message) -> aiocoap.Message:
        self.counters["registrations_refused"] += 1
        log.warning("registration from %s refused: %s", peer(request)[0], reason)
        return _bad(reason)

    async def _register(self, request: aiocoap.Message) -> aiocoap.Message:
        query = _query(request)
        ep = query.get("ep", "")
        if not valid_ep(ep):
            return self._refuse("ep: endpoint name missing or invalid", request)
        if problem := text_problem(query):
            return self._refuse(problem, request)
        refused = self.guard.refusal(request, ep)
        if refused is not None:
            self.counters["registrations_refused"] += 1
            return refused
        try:
            lifetime = int(query.get("lt", "90000"))  # RFC 9176 default: 25 hours
            mpy = int(query["mpy"]) if query.get("mpy") else None
        except ValueError:
            return self._refuse("lt and mpy must be integers", request)
        if not MIN_LIFETIME_S <= lifetime <= MAX_LIFETIME_S:
            return self._refuse(f"lt: must be {MIN_LIFETIME_S}..{MAX_LIFETIME_S} s", request)
        if mpy is not None and not 0 <= mpy < 2**31:
            return self._refuse("mpy: out of range", request)
        try:
            links = _links(request)
        except ValueError as exc:
            return self._refuse(str(exc), request)
        address, port = peer(request)
        registration_id = await self.registry.register(
            ep=ep,
            lifetime_s=lifetime,
            kind=query.get("et") or "pifleet.esp32",
            name=query.get("name"),
            role=query.get("role"),
            mpy=mpy,
            firmware=query.get("fw"),
            agent_version=query.get("agent"),
            links=links,
            address=address,
            port=port,
            safe_mode=unquote(query.get("safe", "")) or None,  # the board percent-encodes its query values
        )
        self.counters["registrations"] += 1
        # the master's time in the answer: the board's clock (docs/protocol.md, "Registration")
        return aiocoap.Message(
            code=Code.CREATED,
            location_path=("rd", registration_id),
            content_format=50,
            payload=b'{"time": %.3f}' % time.time(),
        )

    def get_link_description(self):
        return {"rt": "core.rd", "ct": str(int(LINK_FORMAT))}


class Registrations(resource.Resource, resource.PathCapable):
    """POST /rd/ID updates (the heartbeat), DELETE /rd/ID removes (RFC 9176 §5.3.1, §5.3.2)."""

    def __init__(self, registry: Registry, counters: Counter, guard: Guard) -> None:
        super().__init__()
        self.registry = registry
        self.counters = counters
        self.guard = guard

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        if len(path) != 1:
            return aiocoap.Message(code=Code.NOT_FOUND)
        who = sender(request)
        if request.code == Code.POST and who is not None and not request.payload:
            # the common case, a paired board's heartbeat: "is it the owner's" and the update in one batched
            # statement; anything else (another board's registration, none, a bad lt, new links) takes the path below
            lifetime = _lifetime(_query(request))
            if lifetime is not False and await self.registry.heartbeat(path[0], who, lifetime, *peer(request)):
                self.counters["updates"] += 1
                return aiocoap.Message(code=Code.CHANGED)
        owner = await self.registry.owner(path[0])
        if owner is None:
            return aiocoap.Message(code=Code.NOT_FOUND)
        refused = self.guard.refusal(request, owner)
        if refused is not None:
            return refused
        if request.code == Code.POST:
            return await self._update(request, path[0], owner)
        if request.code == Code.DELETE:
            ok = await self.registry.remove(path[0])
            return aiocoap.Message(code=Code.DELETED if ok else Code.NOT_FOUND)
        return aiocoap.Message(code=Code.METHOD_NOT_ALLOWED)

    async def _update(self, request: aiocoap.Message, registration_id: str, owner: str) -> aiocoap.Message:
        query = _query(request)
        lifetime = None
        if "lt" in query:
            try:
                lifetime = int(query["lt"])
            except ValueError:
                return _bad("lt must be an integer")
            if not MIN_LIFETIME_S <= lifetime <= MAX_LIFETIME_S:
                return _bad(f"lt: must be {MIN_LIFETIME_S}..{MAX_LIFETIME_S} s")
        if request.payload or request.opt.content_format is not None:
            return await self._relink(request, registration_id, owner, query, lifetime)
        if not await self.registry.update(registration_id, lifetime, *peer(request)):
            return aiocoap.Message(code=Code.NOT_FOUND)
        self.counters["updates"] += 1
        return aiocoap.Message(code=Code.CHANGED)

    async def _relink(
        self, request: aiocoap.Message, registration_id: str, owner: str, query: dict[str, str], lifetime: int | None
    ) -> aiocoap.Message:
        """An update with links (RFC 9176 §5.3: they replace the registration's): a board's role switch in place."""
        try:
            links = _links(request, required=True)
        except ValueError as exc:
            return self._refuse_update(str(exc), request)
        if problem := text_problem(query):
            return self._refuse_update(problem, request)
        role = unquote(query.get("role", "")) or None
        if not await self.registry.relink(registration_id, owner, links, role, lifetime, *peer(request)):
            return aiocoap.Message(code=Code.NOT_FOUND)
        self.counters["updates"] += 1
        return aiocoap.Message(code=Code.CHANGED)

    def _refuse_update(self, reason: str, request: aiocoap.Message) -> aiocoap.Message:
        self.counters["updates_refused"] += 1
        log.warning("registration update from %s refused: %s", peer(request)[0], reason)
        return _bad(reason)


class Telemetry(resource.Resource):
    """POST /t?ep=ID {"cap": NAME, "values": {...}}: what a board's capability reports by itself (periodic
    readings, button presses). Stored as readings; 4.04 for an unknown board, 4.03 from another address."""

    def __init__(self, registry: Registry, counters: Counter, guard: Guard) -> None:
        super().__init__()
        self.registry = registry
        self.counters = counters
        self.guard = guard

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        ep = _query(request).get("ep", "")
        if not valid_ep(ep):
            self.counters["telemetry_refused"] += 1
            return _bad("ep: endpoint name missing or invalid")
        refused = self.guard.refusal(request, ep)
        if refused is not None:
            return refused
        try:
            body = msgspec.json.decode(request.payload)
            cap, values = body["cap"], body["values"]
            if not isinstance(cap, str) or not isinstance(values, dict):
                raise TypeError("cap must be a string and values an object")
        except (msgspec.DecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:  # not UTF-8: not JSON
            self.counters["telemetry_refused"] += 1
            return _bad(f"telemetry must be JSON {{cap, values}}: {exc}")
        try:
            outcome = await self.registry.telemetry(ep, peer(request)[0], cap, values)
        except InvalidError as exc:
            self.counters["telemetry_refused"] += 1
            return _bad(f"{exc.field}: {exc.detail}")
        if outcome is None:
            self.counters["telemetry"] += 1
            return aiocoap.Message(code=Code.CHANGED)
        self.counters["telemetry_refused"] += 1
        log.warning("telemetry from %s refused: %s", peer(request)[0], outcome)
        code = Code.NOT_FOUND if outcome.startswith("unknown") else Code.FORBIDDEN
        return aiocoap.Message(code=code, payload=outcome.encode(), content_format=_TEXT)


class _Stripped(aiocoap.Message):
    """A request as a resource below the site sees it (its path shortened by the resource's place): the request's
    own fields, its options copied one level deep, and its URI before the stripping worked out only if asked."""

    @property
    def _original_request_uri(self) -> str:  # aiocoap's Message.get_request_uri looks for it
        return self._origin.get_request_uri()


class Site(resource.Site):
    """aiocoap's Site with a cheaper hand-over to the resource, the same resources found. aiocoap's copies every
    request with a deep copy of all its options and works out its absolute URI at once (the sender's address
    parsed by `ipaddress`, twice): with the OSCORE work around it, a fifth of the master's CPU per heartbeat and
    per telemetry report (tools/bench/gateway.py --profile), for a URI no resource here reads."""

    def _find_child_and_pathstripped_message(self, request):
        path = request.opt.uri_path
        if path in self._resources:
            return self._resources[path], _stripped(request, ())
        if not path:
            raise KeyError()
        for cut in range(len(path) - 1, 0, -1):  # the longest sub-site first, as aiocoap's
            if path[:cut] in self._subsites:
                remainder = path[cut:]
                return self._subsites[path[:cut]], _stripped(request, () if remainder == ("",) else remainder)
        raise KeyError()


def _stripped(request: aiocoap.Message, path: tuple[str, ...]) -> _Stripped:
    stripped = _Stripped.__new__(_Stripped)
    stripped.__dict__.update(request.__dict__)
    opt = stripped.opt = type(request.opt)()
    opt._options = {number: list(options) for number, options in request.opt._options.items()}
    opt.uri_path = path
    stripped._origin = request
    return stripped


def build_site(
    registry: Registry, counters: Counter, paired: Callable[[str], bool] = lambda ep: False
) -> resource.Site:
    site = Site()
    site.add_resource((".well-known", "core"), resource.WKCResource(site.get_resources_as_linkheader))
    guard = Guard(paired, counters)
    site.add_resource(("rd",), Directory(registry, counters, guard))
    site.add_resource(("rd",), Registrations(registry, counters, guard))  # a sub-site: /rd/ID
    site.add_resource(("t",), Telemetry(registry, counters, guard))
    return site
