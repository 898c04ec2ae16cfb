"""CoAP message layer (RFC 7252 §4): reliability, deduplication and request/response matching over UDP.

Layer: device side, transport. It owns the socket. It sends our Confirmable requests with retransmission and
exponential backoff, matches ACKs/RSTs by Message ID and responses by token, answers duplicate incoming CONs
with the response it already sent, and turns slow handlers into separate responses. It knows nothing about
paths, JSON or capabilities: requests go to the `handler` coroutine given to it, which returns
(code, options, payload). Malformed datagrams are dropped and counted in `stats`, never raised.
"""

import asyncio
import random

from agent import coap
from agent.port import (
    collect,
    const,
    peer_of,
    print_exception,
    random_bytes,
    recvfrom,
    sleep_ms,
    ticks_diff,
    ticks_ms,
    wait_for_ms,
)

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_ACK = const(2)
_CON = const(0)
_EMPTY = const(0)
_GET = const(1)
_INTERNAL_ERROR = const(160)
_NON = const(1)
_RST = const(3)

# RFC 7252 §4.8 transmission parameters.
_ACK_TIMEOUT_MS = const(2000)
_MAX_RETRANSMIT = const(4)
# MAX_TRANSMIT_WAIT (93 s): how long a separate response to our request may take at most.
_MAX_TRANSMIT_WAIT_MS = const(93000)
# Answer within this time piggy-backed on the ACK; slower handlers get an empty ACK first, well before the
# client's first retransmission (ACK_TIMEOUT is at least 2 s).
_PIGGYBACK_MS = const(1000)
_ACKER_MS = const(250)  # how often the one acker task looks for handlers slower than _PIGGYBACK_MS
# How many incoming exchanges we remember for deduplication. RFC 7252 asks for EXCHANGE_LIFETIME (247 s);
# a board bounds it by count instead: its one peer, the master, has one command per board in flight (and
# a push sends its blocks one after the other), so only the last few exchanges can still be retransmitted.
# Each remembered answer is a protected datagram (≈ 150 B with its key): 8, not 24, keep 2.5 KB free.
_DEDUPE_SLOTS = const(8)
_MAX_DATAGRAM = const(1280)


class RequestError(Exception):
    """Our request got no usable answer (timeout or reset)."""


class _Pending:
    """One of our outgoing Confirmable requests, waiting for its ACK and response."""

    __slots__ = ("mid", "token", "event", "acked", "response", "reset")

    def __init__(self, mid, token):
        self.mid = mid
        self.token = token
        self.event = asyncio.Event()
        self.acked = asyncio.Event()
        self.response = None
        self.reset = False


class Endpoint:
    pulse = int  # called by the acker every _ACKER_MS: agent/app.py's pulse (the watchdog), a no-op until set

    def __init__(self, sock, handler, oscore=None):
        self.sock = sock
        self.handler = handler
        # agent.oscore.Context of a paired board: every request but GET /.well-known/core must be protected, and
        # our own requests (registration, telemetry) are protected (docs/security.md, "OSCORE")
        self.oscore = oscore
        self._mid = random.getrandbits(16)
        self._pending = {}  # mid -> _Pending, until ACK/RST
        self._by_token = {}  # token -> _Pending, until the response arrives
        # Deduplication of incoming CONs: key (ip, port, mid) -> bytes of our answer (None while still working).
        self._seen = {}
        self._seen_order = []
        self.stats = {"rx": 0, "tx": 0, "dropped": 0, "duplicates": 0, "retransmits": 0, "errors": 0, "refused": 0}
        self._tasks = set()  # strong references to the request handlers in flight
        # exchanges whose handler runs: dedupe key -> [start ms, request, addr, separate]; the acker (one task for
        # all) sends the empty ACK of a CON whose handler takes longer than _PIGGYBACK_MS and marks it separate
        self._running = {}

    def next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _send(self, data, addr):
        self.stats["tx"] += 1
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:
            # A full send buffer or an unreachable network must not stop the board; CoAP retransmits.
            print("coap: send failed:", exc)

    # -- receiving ---------------------------------------------------------------------------------

    async def serve(self):
        """Receive datagrams forever. Each one is handled on its own; no datagram can stop the loop."""
        acker = asyncio.create_task(self._acker())
        try:
            while True:
                data, addr = await recvfrom(self.sock, _MAX_DATAGRAM)
                self.stats["rx"] += 1
                try:
                    msg = coap.decode(data)
                except coap.DecodeError:
                    self.stats["dropped"] += 1
                    continue
                data = None  # the datagram's buffer can go while the request is handled
                try:
                    self._receive(msg, addr)
                except Exception as exc:  # noqa: BLE001 — the top loop of the message layer keeps serving
                    self.stats["errors"] += 1
                    print_exception(exc)
                # and the message can go too: held here, it kept the datagram's buffer (its payload is a view of
                # it) until the next one came, 1 KB after a plan push
                msg = addr = None
        finally:
            acker.cancel()

    async def _acker(self):
        """Send the empty ACK of every CON whose handler is slower than _PIGGYBACK_MS (RFC 7252 §5.2.2)."""
        while True:
            await sleep_ms(_ACKER_MS)
            self.pulse()
            if not self._running:
                continue
            now = ticks_ms()
            for key in self._running:
                entry = self._running[key]
                if not entry[3] and ticks_diff(now, entry[0]) >= _PIGGYBACK_MS and entry[1].type == _CON:
                    entry[3] = True
                    empty_ack = coap.encode(coap.Message(_ACK, _EMPTY, entry[1].mid))
                    self._remember(key, empty_ack)
                    self._send(empty_ack, entry[2])

    def _receive(self, msg, addr):
        if msg.type in (_ACK, _RST):
            self._on_ack(msg)
        elif msg.code == _EMPTY:
            # A CoAP ping (empty CON) is answered with RST; an empty NON is meaningless.
            if msg.type == _CON:
                self._send(coap.encode(coap.Message(_RST, _EMPTY, msg.mid)), addr)
        elif msg.is_request():
            self._on_request(msg, addr)
        elif msg.is_response():
            self._on_separate_response(msg, addr)
        else:
            self.stats["dropped"] += 1  # reserved code classes 1, 6, 7

    def _on_ack(self, msg):
        pending = self._pending.pop(msg.mid, None)
        if pending is None:
            return  # late or duplicate ACK
        if msg.type == _RST:
            pending.reset = True
            pending.event.set()
        elif msg.code != _EMPTY:
            pending.response = msg
            pending.event.set()
        pending.acked.set()

    def _on_separate_response(self, msg, addr):
        pending = self._by_token.get(msg.token)
        if msg.type == _CON:
            # Acknowledge every CON response, also duplicates of one we already took.
            self._send(coap.encode(coap.Message(_ACK, _EMPTY, msg.mid)), addr)
        if pending is None:
            return  # not ours, or a duplicate of a response we already took
        pending.response = msg
        pending.acked.set()
        pending.event.set()

    def _on_request(self, msg, addr):
        ip, port = peer_of(addr)
        key = (ip, port, msg.mid)
        if key in self._seen:
            self.stats["duplicates"] += 1
            answer = self._seen[key]
            if answer is not None:
                self._send(answer, addr)
            return
        self._remember(key, None)
        task = asyncio.create_task(self._answer(msg, addr, key))
        self._tasks.add(task)

    def _remember(self, key, answer):
        if key not in self._seen:
            self._seen_order.append(key)
            if len(self._seen_order) > _DEDUPE_SLOTS:
                self._seen.pop(self._seen_order.pop(0), None)
        self._seen[key] = answer

    def _unprotect(self, msg, addr):
        """(inner request, request id, None); or (None, None, the Message to send back, None for a NON) for a
        request OSCORE does not let through: counted and printed, unless it is the Echo challenge after our
        reboot (the master proves its request fresh with our Echo, RFC 8613 Appendix B.1.2)."""
        from agent import oscore

        if msg.option(oscore.OSCORE) is None:
            if msg.code == _GET and msg.path() == ".well-known/core":
                return msg, None, None
            exc = oscore.OscoreError("OSCORE required")
            exc.code, exc.diag = oscore.UNAUTHORIZED, "OSCORE required"
        else:
            try:
                inner, rid = self.oscore.unprotect_request(msg)
                return inner, rid, None
            except oscore.EchoRequiredError as challenge:
                return None, None, self.oscore.echo_response(msg, challenge.rid)
            except oscore.OscoreError as refused:
                exc = refused
        self.stats["refused"] += 1
        print("coap: refused a request from %s:%d: %r" % (peer_of(addr) + (exc,)))
        return None, None, oscore.error_response(msg, exc) if msg.type == _CON else None

    async def _answer(self, msg, addr, key):
        """Run the handler; piggy-back its answer on the ACK, or send it separately if it is slow (the acker
        then sent the empty ACK)."""
        rid = None
        try:
            if self.oscore is not None:
                msg, rid, refusal = self._unprotect(msg, addr)
                if msg is None:
                    if refusal is not None:
                        data = coap.encode(refusal)
                        self._remember(key, data)
                        self._send(data, addr)
                    return
            entry = [ticks_ms(), msg, addr, False]
            self._running[key] = entry
            try:
                code, options, payload = await self.handler(msg, addr)
            except Exception as exc:  # noqa: BLE001 — a broken handler answers 5.00, the board lives on
                self.stats["errors"] += 1
                print_exception(exc)
                code, options, payload = _INTERNAL_ERROR, [], b""
            finally:
                self._running.pop(key, None)
            if not entry[3]:
                rtype = _ACK if msg.type == _CON else _NON
                mid = msg.mid if msg.type == _CON else self.next_mid()
                reply = coap.Message(rtype, code, mid, msg.token, options, payload)
                if rid is not None:
                    reply = self.oscore.protect_response(reply, rid)
                data = coap.encode(reply)
                self._remember(key, data)
                self._send(data, addr)
            else:
                # RFC 7252 §5.2.2: the separate response is a new CON exchange with the same token.
                reply = coap.Message(_CON, code, self.next_mid(), msg.token, options, payload)
                if rid is not None:
                    reply = self.oscore.protect_response(reply, rid)
                pending = _Pending(reply.mid, None)
                self._pending[reply.mid] = pending
                try:
                    await self._transmit(coap.encode(reply), addr, pending)
                except RequestError:
                    print("coap: separate response to", peer_of(addr), "was never acknowledged")
                finally:
                    self._pending.pop(reply.mid, None)
        finally:
            self._tasks.discard(asyncio.current_task())
            # Collect between exchanges, while little is alive: on a small heap this keeps free memory in
            # large blocks (the next recvfrom needs 1280 contiguous bytes).
            collect()

    # -- sending our own requests ------------------------------------------------------------------

    async def _transmit(self, data, addr, pending):
        """Send a CON and retransmit with exponential backoff until it is acknowledged."""
        # Initial timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR (1.5)].
        timeout = _ACK_TIMEOUT_MS + random.getrandbits(10) * (_ACK_TIMEOUT_MS // 2) // 1023
        for attempt in range(_MAX_RETRANSMIT + 1):
            if attempt:
                self.stats["retransmits"] += 1
            self._send(data, addr)
            try:
                await wait_for_ms(pending.acked.wait(), timeout)
                return
            except asyncio.TimeoutError:
                timeout *= 2
        raise RequestError("no acknowledgement")

    async def request(self, addr, code, options, payload=b""):
        """Send a Confirmable request to addr and return the response Message (unprotected, with OSCORE).

        Raises RequestError when the peer never answers or resets the exchange, or (with OSCORE) when its
        answer is not protected by our context.
        """
        if self.oscore is None:
            return await self._exchange(addr, code, options, payload)
        from agent import oscore

        for attempt in range(2):
            protected, rid = self.oscore.protect_request(coap.Message(_CON, code, 0, b"", options, payload))
            response = await self._exchange(addr, protected.code, protected.options, protected.payload)
            try:
                inner = self.oscore.unprotect_response(response, rid)
            except oscore.OscoreError as exc:
                self.stats["refused"] += 1
                raise RequestError("answer not protected by our context (%s: %s)" % (coap.code_str(response.code), exc))
            echo = inner.option(oscore.ECHO)
            if inner.code == oscore.UNAUTHORIZED and echo is not None and attempt == 0:
                options = options + [(oscore.ECHO, echo)]  # the master restarted: prove we are fresh
                continue
            return inner
        raise RequestError("the master asked for freshness twice")

    async def _exchange(self, addr, code, options, payload):
        mid = self.next_mid()
        token = random_bytes(4)
        pending = _Pending(mid, token)
        self._pending[mid] = pending
        self._by_token[token] = pending
        try:
            await self._transmit(coap.encode(coap.Message(_CON, code, mid, token, options, payload)), addr, pending)
            try:
                await wait_for_ms(pending.event.wait(), _MAX_TRANSMIT_WAIT_MS)
            except asyncio.TimeoutError:
                raise RequestError("no separate response")
            if pending.reset:
                raise RequestError("reset by peer")
            return pending.response
        finally:
            self._pending.pop(mid, None)
            self._by_token.pop(token, None)
