"""Block-wise transfers (RFC 7959), server side: large answers in Block2 blocks, large request bodies in Block1.

Layer: device side, between the endpoint (messages) and the resources (paths). It wraps the resources' handler
and has its signature: (msg, addr) -> (code, options, payload). It knows nothing of JSON or commands.

- Block2: an answer longer than one block (512 bytes, or the smaller size a client asks for with an early Block2
  in its request) is kept whole, with an ETag, keyed by (peer, method, path), and sent block by block. Requests
  for later blocks are served from that copy and never reach the handler again: a command runs once however many
  blocks its answer takes. Copies expire after EXCHANGE_LIFETIME, are replaced by a newer answer to the same
  key, and only the last _KEPT are held.
- Block1: a request body in blocks is assembled in one buffer of `limit` bytes, preallocated at boot, for one
  (peer, method, path) at a time (4.13 with Size1 beyond the limit); each block but the last is answered
  2.31 Continue; a block that does not continue the assembly gets 4.08; the last block dispatches the whole
  request to the handler as if it had come in one datagram (its payload a memoryview of the buffer).
Malformed Block options answer 4.02 (longer than 3 bytes, or repeated) or 4.00 (SZX 7), never an exception.
Requests without Block options cost one scan of the options and a length check of the answer.
"""

import random

from agent import coap
from agent.port import const, ticks_diff, ticks_ms

# 512-byte blocks (SZX 5): an answer block and its headers stay well inside one 1280-byte datagram, and the
# endpoint's dedupe memory (24 answers) holds at most ~13 KB of them.
_SZX = const(5)
_EXCHANGE_LIFETIME_MS = const(247000)  # RFC 7252 §4.8.2
_KEPT = const(2)  # answers kept for their later blocks
BODY_LIMIT = const(8192)  # default largest request body (config.json "max_body"), preallocated


class _Entry:
    """A kept answer (Block2) or a body being assembled (Block1), for one (peer, method, path)."""

    __slots__ = ("addr", "method", "path", "born", "code", "options", "data", "etag", "filled")

    def __init__(self, addr, method, path):
        self.addr = addr
        self.method = method
        self.path = path
        self.born = ticks_ms()


def _find(entries, addr, method, path):
    """The live entry for the key; expired ones are dropped on the way."""
    now = ticks_ms()
    found = None
    for entry in entries[:]:
        if ticks_diff(now, entry.born) > _EXCHANGE_LIFETIME_MS:
            entries.remove(entry)
        elif entry.method == method and entry.path == path and entry.addr == addr:
            found = entry
    return found


def _keep(entries, entry, bound):
    """Add entry, dropping an older one for the same key and the oldest beyond bound."""
    old = _find(entries, entry.addr, entry.method, entry.path)
    if old is not None:
        entries.remove(old)
    entries.append(entry)
    if len(entries) > bound:
        entries.pop(0)


class Blockwise:
    def __init__(self, handler, buffer):
        self.handler = handler
        # The body buffer is allocated once, first thing at boot (agent.app.run): later the heap is too
        # fragmented for it (on the 160 KB virtual board no 6 KB block was left free after a few exchanges,
        # nor after an adoption, with 80 KB free in all).
        self._buf = buffer
        self.limit = len(buffer)
        self._answers = []
        self._body = None  # the one assembly in progress (an _Entry with .filled)
        self._etag = random.getrandbits(16)

    async def handle(self, msg, addr):
        block1 = block2 = None
        for number, value in msg.options:
            if number == coap.BLOCK1 or number == coap.BLOCK2:
                if len(value) > 3 or (block1 if number == coap.BLOCK1 else block2) is not None:
                    return coap.BAD_OPTION, [], b""  # RFC 7252 §5.4.3: like an unrecognised critical option
                if number == coap.BLOCK1:
                    block1 = coap.read_block(value)
                else:
                    block2 = coap.read_block(value)
        if block1 is None and block2 is None:
            answer = await self.handler(msg, addr)
            if len(answer[2]) <= 16 << _SZX:
                return answer
            return self._first(msg, addr, answer, _SZX, None)
        if (block1 is not None and block1[2] == 7) or (block2 is not None and block2[2] == 7):
            return coap.BAD_REQUEST, [], b"SZX 7 (BERT) is for reliable transports"
        szx = _SZX
        if block2 is not None:
            num, _, asked = block2
            szx = min(asked, _SZX)
            if num:
                return await self._later(msg, addr, (num << (asked + 4)) >> (szx + 4), szx)
        echo = None
        if block1 is not None:
            refused = self._receive(msg, addr, block1)
            if refused is not None:
                return refused
            echo = (coap.BLOCK1, coap.block_value(block1[0], False, block1[2]))
        return self._first(msg, addr, await self.handler(msg, addr), szx, echo)

    # -- Block2 --------------------------------------------------------------------------------------

    def _first(self, msg, addr, answer, szx, echo):
        code, options, payload = answer
        if len(payload) <= 16 << szx:
            return answer if echo is None else (code, options + [echo], payload)
        entry = _Entry(addr, msg.code, msg.path())
        entry.code = code
        entry.options = options if echo is None else options + [echo]
        entry.data = payload
        self._etag = (self._etag + 1) & 0xFFFF
        entry.etag = bytes((self._etag >> 8, self._etag & 0xFF))
        _keep(self._answers, entry, _KEPT)
        return self._block(entry, 0, szx)

    async def _later(self, msg, addr, num, szx):
        entry = _find(self._answers, addr, msg.code, msg.path())
        if entry is None:
            if msg.code != coap.GET:
                # The kept answer is gone (expired or pushed out); running a command again is not an option.
                return coap.REQUEST_ENTITY_INCOMPLETE, [], b"answer expired; repeat the request"
            # A GET is safe to answer afresh: a new ETag tells the client if the representation changed.
            self._first(msg, addr, await self.handler(msg, addr), szx, None)
            entry = _find(self._answers, addr, msg.code, msg.path())
            if entry is None:
                return coap.BAD_OPTION, [], b""  # the fresh answer fits in one block: no such block
        return self._block(entry, num, szx)

    @staticmethod
    def _block(entry, num, szx):
        size = 16 << szx
        start = num * size
        total = len(entry.data)
        if start >= total:
            return coap.BAD_OPTION, [], b""  # a block past the end
        more = start + size < total
        options = entry.options + [(coap.ETAG, entry.etag), (coap.BLOCK2, coap.block_value(num, more, szx))]
        if num == 0:
            options.append((coap.SIZE2, coap.uint(total)))
        return entry.code, options, entry.data[start:start + size]

    # -- Block1 --------------------------------------------------------------------------------------

    def _too_large(self):
        return coap.REQUEST_ENTITY_TOO_LARGE, [(coap.SIZE1, coap.uint(self.limit))], b""

    def _receive(self, msg, addr, block1):
        """Take one request block. None when msg now holds the whole body; else the answer to send."""
        num, more, szx = block1
        size = 16 << szx
        payload = msg.payload
        if more and len(payload) != size:
            return coap.BAD_REQUEST, [], b"a block that is not the last must fill its size"
        if num == 0 and not more:
            return None  # the whole body in one block
        path = msg.path()
        body = self._body
        ours = body is not None and body.method == msg.code and body.path == path and body.addr == addr
        if ours and ticks_diff(ticks_ms(), body.born) > _EXCHANGE_LIFETIME_MS:
            ours = False  # stale: its client gave up long ago
        start = num * size
        end = start + len(payload)
        if num == 0:
            if coap.read_uint(msg.option(coap.SIZE1)) > self.limit:
                return self._too_large()
            # One assembly at a time: a new one replaces any other (whose next block then gets 4.08).
            body = self._body = _Entry(addr, msg.code, path)
            body.filled = 0
        elif not ours or start != body.filled:
            self._body = None
            return coap.REQUEST_ENTITY_INCOMPLETE, [], b""
        if end > self.limit:
            self._body = None
            return self._too_large()
        self._buf[start:end] = payload
        body.filled = end
        body.born = ticks_ms()  # an assembly that keeps moving is not stale
        if more:
            return coap.CONTINUE, [(coap.BLOCK1, coap.block_value(num, True, szx))], b""
        self._body = None
        # No copy (it would need the body's size again, contiguous): the handler gets a view of the buffer,
        # which stays untouched until the next assembly begins — the resources parse it before their first await.
        msg.payload = memoryview(self._buf)[:end]
        return None
