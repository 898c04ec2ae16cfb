"""The master's CoAP endpoint: one aiocoap context that serves the boards (resources.py) and commands them.

Lifespan: `await Gateway.start()` binds UDP; `await Gateway.stop()` closes it. One context serves and sends, so
commands leave from the master's well-known port (what a board expects to see).

OSCORE (docs/security.md): each paired board has a security context (gateway/oscore.py). The site is wrapped
in aiocoap's OscoreSiteWrapper, which finds a board's context by the kid of its request. The master's own
requests to a board are protected by mapping the board's address to its context (client credentials),
updated whenever the board registers from an address.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.oscore
import msgspec
from aiocoap.credentials import CredentialsMap
from aiocoap.message import UndecidedRemote
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.optiontypes import BlockOption

from ..errors import BoardError, BoardTimeoutError, BoardUnreachableError
from ..metrics import Metrics
from . import speed, state
from .exchanges import abandon_unwanted_requests, answer_in_the_ack
from .icmp import pending_errors_stay_their_boards
from .oscore import BoardContext
from .resolve import resolve_literals_once
from .resources import build_site
from .strict import StrictOscoreSiteWrapper, refuse_undecodable_string_options

log = logging.getLogger(__name__)

JSON = ContentFormat.JSON


class _CountUnparsable(logging.Filter):
    """aiocoap drops a malformed datagram with one log line; count those drops for the metrics."""

    def __init__(self, counters: Counter) -> None:
        super().__init__()
        self.counters = counters

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg.startswith("Ignoring unparsable message"):
            self.counters["malformed_dropped"] += 1
            record.levelno, record.levelname = logging.INFO, "INFO"  # a misbehaving peer, not our failure
        return True


# the answers the site gave one request, seen by _CountedSite (also from the task aiocoap renders a protected
# request in: it starts with a copy of the wrapper's context, and so appends to the same list)
_ANSWERS: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("pifleet_coap_answers")


class _Answered:
    """A request's pipe, noting whether the first answer on it is a success (2.xx)."""

    def __init__(self, pipe, answers: list[bool]) -> None:
        self._pipe = pipe
        self._answers = answers

    def __getattr__(self, name: str):
        return getattr(self._pipe, name)

    def add_response(self, response: aiocoap.Message, is_last: bool = False) -> None:
        self._answers.append(response.code.is_successful())
        self._pipe.add_response(response, is_last)

    def add_exception(self, exception: BaseException) -> None:
        self._answers.append(False)
        self._pipe.add_exception(exception)


class _CountedSite:
    """The resources as the OSCORE wrapper sees them: each request's answer is noted for _CountingSiteWrapper."""

    def __init__(self, site) -> None:
        self._site = site

    def __getattr__(self, name: str):
        return getattr(self._site, name)

    async def render_to_pipe(self, pipe) -> None:
        answers = _ANSWERS.get(None)
        if answers is None:
            return await self._site.render_to_pipe(pipe)
        try:
            await self._site.render_to_pipe(_Answered(pipe, answers))
        except Exception:
            answers.append(False)  # a refusal raised (4.04, 4.05, …): aiocoap renders it
            raise


class _CountingSiteWrapper(StrictOscoreSiteWrapper):
    """Counts every request the endpoint takes as served or refused, by the answer of the resource it reached (for
    a protected request, the code inside the protection, which the outer 2.04 hides). One that never reached a
    resource was refused by the OSCORE layer: no context, a replay, a decryption failure."""

    def __init__(self, site, server_credentials, counters: Counter, datagrams: Counter) -> None:
        super().__init__(_CountedSite(site), server_credentials, counters)
        self.datagrams = datagrams

    async def render_to_pipe(self, pipe) -> None:
        answers: list[bool] = []
        token = _ANSWERS.set(answers)
        try:
            await super().render_to_pipe(pipe)
        except Exception:
            self.datagrams["refused"] += 1
            raise
        else:
            self.datagrams["served" if answers[:1] == [True] else "refused"] += 1
        finally:
            _ANSWERS.reset(token)


def _uri(address: str, port: int, *path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"coap://{host}:{port}/" + "/".join(path)


class Gateway:
    """Owns the aiocoap context; implements devices.link.BoardLink and BoardKeys."""

    def __init__(self, host: str, port: int, keys_dir: Path | None = None, metrics: Metrics | None = None) -> None:
        self.host, self.port = host, port
        self.context: aiocoap.Context | None = None
        self.metrics = metrics or Metrics()
        self.counters: Counter = self.metrics.coap_events  # GET /api/metrics shows them
        self._filter = _CountUnparsable(self.counters)
        self.keys_dir = keys_dir  # where the sender sequence numbers are kept (None: no OSCORE)
        self._boards: dict[str, BoardContext] = {}  # device id -> its OSCORE context
        self._server_credentials = CredentialsMap()
        self._bound: dict[str, str] = {}  # device id -> its address pattern in the client credentials

    async def start(self, registry) -> None:
        self.site = build_site(registry, self.counters, self.paired)
        if registry is not None:  # a gateway without a registry (tests of the endpoint alone) keeps no state
            state.attach(self.site, registry.states, self.counters, self.paired)  # POST /s: the boards' live state
        refuse_undecodable_string_options()  # malformed datagrams are dropped and counted, never raised
        abandon_unwanted_requests()  # a command that timed out does not hold back the next one (exchanges.py)
        answer_in_the_ack()  # an answer ready within 1 s needs no separate, queued response (exchanges.py)
        pending_errors_stay_their_boards()  # one board's ICMP error does not fail the next request (icmp.py)
        speed.install()  # aiocoap's per-message copies and address parsing, cheaper (speed.py)
        self.context = await aiocoap.Context.create_server_context(
            _CountingSiteWrapper(self.site, self._server_credentials, self.counters, self.metrics.datagrams),
            bind=(self.host, self.port),
            transports=["oscore", "udp6"],
        )
        resolve_literals_once(self.context)  # a board's address literal is not resolved again for each request
        speed.whole_protected_requests(self.context)  # no outer block-wise layer under OSCORE (speed.py)
        logging.getLogger("coap-server").addFilter(self._filter)
        log.info("CoAP endpoint on udp://%s:%d", self.host, self.port)

    # -- OSCORE contexts of paired boards ---------------------------------------------------------------------

    def paired(self, device_id: str) -> bool:
        return device_id in self._boards

    def paired_at(self, address: str, port: int) -> bool:
        """Whether what goes to this address is protected with a context held here (a board of ours registered
        from it)."""
        return _uri(address, port) + "*" in self._bound.values()

    def pair(self, device_id: str, oscore_id: bytes, secret: bytes, address: str | None, port: int | None) -> None:
        """Know a board's keys (flashed, adopted, or at start); replaces what was known before."""
        if self.keys_dir is None:
            return
        self.unpair(device_id, forget=False)
        context = BoardContext(device_id, oscore_id, secret, self.keys_dir)
        self._boards[device_id] = context
        self._server_credentials[f":{device_id}"] = context
        if address is not None and port is not None:
            self.bind(device_id, address, port)

    def unpair(self, device_id: str, forget: bool = True) -> None:
        context = self._boards.pop(device_id, None)
        self._server_credentials.pop(f":{device_id}", None)
        pattern = self._bound.pop(device_id, None)
        if pattern is not None and self.context is not None:
            self.context.client_credentials.pop(pattern, None)
        if context is not None and forget:
            context.forget()

    def bind(self, device_id: str, address: str, port: int) -> None:
        """The board registered from this address: protect what the master sends there with its context."""
        context = self._boards.get(device_id)
        if context is None or self.context is None:
            return
        pattern = _uri(address, port) + "*"
        old = self._bound.get(device_id)
        if old == pattern:
            return
        if old is not None:
            self.context.client_credentials.pop(old, None)
        for other, bound in list(self._bound.items()):  # an address a revoked or moved board held before
            if bound == pattern and other != device_id:
                del self._bound[other]
        self.context.client_credentials[pattern] = context
        self._bound[device_id] = pattern

    async def stop(self) -> None:
        logging.getLogger("coap-server").removeFilter(self._filter)
        if self.context is not None:
            await self.context.shutdown()
            self.context = None

    async def _request(
        self, message: aiocoap.Message, timeout: float, handle_blockwise: bool = True
    ) -> aiocoap.Message:
        assert self.context is not None, "gateway not started"
        try:
            async with asyncio.timeout(timeout):
                if message.remote is None or isinstance(message.remote, UndecidedRemote):
                    # resolved (a URI's host) before aiocoap's request exists: a plain request
                    # (handle_blockwise=False) resolves it in its own task, in a worker thread, and one given up
                    # meanwhile has ended its pipe before that task hands it on, which then fails inside aiocoap
                    # ("Task exception was never retrieved"; its block-wise layer resolves first, as here)
                    await self.context.find_remote_and_interface(message)
                return await self.context.request(message, handle_blockwise=handle_blockwise).response
        except TimeoutError:
            raise BoardTimeoutError(f"no answer from the board within {timeout:g} s") from None
        except aiocoap.error.NetworkError as exc:
            raise BoardUnreachableError(f"board unreachable: {exc}") from None
        except aiocoap.oscore.NotAProtectedMessage as exc:
            # a paired board refused our request unprotected: it restarted and took a retransmission from
            # before for a replay, or it lost its keys; either way it is not there for us now
            raise BoardUnreachableError(f"the board refused the request ({exc}): restarted, or unpaired") from None
        except aiocoap.error.Error as exc:
            raise BoardError(f"CoAP exchange failed: {exc}") from None

    async def capabilities(self, address: str, port: int) -> dict[str, Any]:
        msg = aiocoap.Message(code=Code.GET, uri=_uri(address, port, "cap"))
        response = await self._request(msg, timeout=30)
        if response.code != Code.CONTENT:
            raise BoardError(f"GET /cap answered {response.code}")
        try:
            return msgspec.json.decode(response.payload)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise BoardError(f"GET /cap sent invalid JSON: {exc}") from None

    async def _json(self, message: aiocoap.Message, timeout: float, what: str) -> dict[str, Any]:
        """The board's JSON answer; BoardError (with the board's error and field) for anything but 2.xx."""
        return self._answer(await self._request(message, timeout), what)

    @staticmethod
    def _answer(response: aiocoap.Message, what: str) -> dict[str, Any]:
        try:
            answer = msgspec.json.decode(response.payload) if response.payload else {}
        except (msgspec.DecodeError, UnicodeDecodeError):
            answer = {"error": response.payload[:200].decode("utf-8", "replace")}
        if not response.code.is_successful() or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            field = answer.get("field") if isinstance(answer, dict) else None
            message = f"{what}: the board answered {response.code}: {error or 'no reason given'}"
            if response.code == Code.REQUEST_ENTITY_INCOMPLETE:
                # the board lost the transfer's first blocks: it restarted in the middle
                raise BoardUnreachableError(message + " (it restarted during the transfer)")
            raise BoardError(message, field=field or None)
        return answer

    async def modules(self, address: str, port: int) -> dict[str, Any]:
        msg = aiocoap.Message(code=Code.GET, uri=_uri(address, port, "m"))
        return await self._json(msg, 30, "GET /m")

    async def stats(self, address: str, port: int) -> dict[str, Any]:
        msg = aiocoap.Message(code=Code.GET, uri=_uri(address, port, "stats"))
        return await self._json(msg, 30, "GET /stats")

    async def restart(self, address: str, port: int) -> None:
        msg = aiocoap.Message(code=Code.POST, uri=_uri(address, port, "restart"))
        self._answer(await self._request(msg, 30), "POST /restart")

    async def wifi(self, address: str, port: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """PUT /w (new Wi-Fi credentials, pifleet/wifi.py) or, without a body, GET /w: the board's network."""
        if body is None:
            return await self._json(aiocoap.Message(code=Code.GET, uri=_uri(address, port, "w")), 10, "GET /w")
        msg = aiocoap.Message(
            code=Code.PUT, uri=_uri(address, port, "w"), payload=msgspec.json.encode(body), content_format=JSON
        )
        return await self._json(msg, 30, "PUT /w")

    async def put_module(self, address: str, port: int, stem: str, sha256: str, data: bytes) -> dict[str, Any]:
        """PUT /m/STEM?sha=… block-wise (RFC 7959 Block1, Size1 on the first block).

        The blocks are sent here, one request each, rather than by aiocoap's automatic block-wise: under OSCORE
        that would protect 1024-byte blocks and then split the (larger) protected message again into outer
        blocks, which a board cannot verify piece by piece. So a paired board gets 512-byte blocks (protected,
        one datagram each), an unpaired one 1024-byte blocks."""
        uri = _uri(address, port, "m", stem) + f"?sha={sha256}"
        return await self._put_blocks(address, port, uri, data, 120, f"module {stem}")

    async def put_image(self, address: str, port: int, sha256: str, data: bytes, progress=None) -> dict[str, Any]:
        """PUT /ota?sha=… block-wise: MicroPython's app image into the board's inactive OTA slot (agent/ota.py),
        512-byte blocks under OSCORE as put_module sends them; progress(done, total) after each block."""
        uri = _uri(address, port, "ota") + f"?sha={sha256}"
        return await self._put_blocks(address, port, uri, data, 10, "PUT /ota", progress)

    async def _put_blocks(
        self, address: str, port: int, uri: str, data: bytes, timeout: float, what: str, progress=None
    ) -> dict[str, Any]:
        """PUT `data` to `uri` in Block1 blocks, one request each (put_module says why): 512 bytes to a paired
        board, 1024 to an unpaired one; progress(done, total) after each block."""
        szx = 5 if self.paired_at(address, port) else 6
        size = 16 << szx
        total = max(1, -(-len(data) // size))
        first = remote = None
        for num in range(total):
            more = num + 1 < total
            payload = data[num * size : (num + 1) * size]
            if first is None:
                msg = first = aiocoap.Message(code=Code.PUT, uri=uri, payload=payload)
            else:
                # the next block to the peer the first one's answer came from, as aiocoap found it (under OSCORE:
                # with its security context): no URI to parse, address to resolve or context to look up again
                msg = aiocoap.Message(
                    code=Code.PUT, payload=payload, uri_path=first.opt.uri_path, uri_query=first.opt.uri_query
                )
                msg.remote = remote
            msg.opt.block1 = BlockOption.BlockwiseTuple(num, more, szx)
            if num == 0:
                msg.opt.size1 = len(data)
            response = await self._request(msg, timeout, handle_blockwise=False)
            remote = response.remote
            if progress is not None:
                progress(num + 1, total)
            if more and response.code == Code.CONTINUE:
                continue
            return self._answer(response, what)
        raise BoardError(f"{what}: the board wanted more than {total} blocks")

    async def ota(self, address: str, port: int, timeout: float = 5) -> dict[str, Any]:
        """GET /ota: the running slot, its MicroPython version, the last update's outcome (agent/ota.py)."""
        msg = aiocoap.Message(code=Code.GET, uri=_uri(address, port, "ota"))
        return await self._json(msg, timeout, "GET /ota")

    async def ota_set(self, address: str, port: int, delete: bool = False) -> dict[str, Any]:
        """GET /ota/set: the running MicroPython's .mpy key, the root set's, the sets waiting in mpy/; DELETE /ota/set
        removes those waiting (agent/sets.py, docs/flashing.md "Different .mpy versions")."""
        msg = aiocoap.Message(code=Code.DELETE if delete else Code.GET, uri=_uri(address, port, "ota", "set"))
        return await self._json(msg, 30, "DELETE /ota/set" if delete else "GET /ota/set")

    async def put_set_file(
        self, address: str, port: int, key: int | None, path: str, sha256: str, data: bytes
    ) -> dict[str, Any]:
        """PUT /ota/set?p=PATH&sha=…[&v=KEY] block-wise, as put_module: one file of the set for .mpy KEY into the
        board's mpy/KEY/ (boot.py and mpyset_swap.py, without KEY, to its root)."""
        query = f"?p={path}&sha={sha256}" + (f"&v={key}" if key is not None else "")
        return await self._put_blocks(address, port, _uri(address, port, "ota", "set") + query, data, 30, f"PUT {path}")

    async def put_plan(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /plan: the board's own timed runs, the time, and the runs it did by itself that the master recorded
        (jobs/autonomy.py); the answer lists runs it did that are not recorded yet."""
        msg = aiocoap.Message(
            code=Code.PUT, uri=_uri(address, port, "plan"), payload=msgspec.json.encode(body), content_format=50
        )
        return await self._json(msg, 30, "PUT /plan")

    async def put_role(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        msg = aiocoap.Message(
            code=Code.PUT, uri=_uri(address, port, "role"), payload=msgspec.json.encode(body), content_format=JSON
        )
        return await self._json(msg, 60, "PUT /role")

    async def command(
        self,
        device_id: str,
        address: str,
        port: int,
        capability: str,
        command: str,
        eid: str,
        params: dict[str, Any],
        timeout: float,
        due: int | None = None,
    ) -> dict[str, Any]:
        # "ep" names the board we mean: one that now holds a reused address refuses instead of acting
        fields = {"eid": eid, "ep": device_id, "params": params}
        if due is not None:
            fields["due"] = due  # a role/group run's instant: the board acts then (Unix ms)
        body = msgspec.json.encode(fields)
        msg = aiocoap.Message(
            code=Code.POST, uri=_uri(address, port, "a", capability, command), payload=body, content_format=JSON
        )
        response = await self._request(msg, timeout)
        try:
            answer = msgspec.json.decode(response.payload) if response.payload else {}
        except (msgspec.DecodeError, UnicodeDecodeError):
            answer = {"error": response.payload[:200].decode("utf-8", "replace")}
        if response.code != Code.CHANGED or not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else None
            field = answer.get("field") if isinstance(answer, dict) else None
            if field == "ep":
                raise BoardUnreachableError(f"another board answers at {address}:{port}: {error}")
            raise BoardError(f"board answered {response.code}: {error or 'no reason given'}", field=field)
        result = answer.get("result")
        return result if isinstance(result, dict) else {"value": result}
