"""What the board prints, for the master: the agent's lines, role modules' print() and tracebacks.

Layer: device side, application. install() puts a print() in builtins that also writes into one ring of _SIZE
bytes, allocated at boot (agent/port.py's print_exception writes tracebacks there too); send(), one task, posts
what the ring holds to the master every _EVERY_MS as `POST /l?ep=ID[&lost=N]` (text/plain, whole lines, at most
the whole ring: one protected datagram), and drops it from the ring only once the master took it. A master that
is away makes the ring overwrite its oldest bytes (counted, sent as lost=N), never the board run out of memory.
(Overriding a builtin needs MICROPY_CAN_OVERRIDE_BUILTINS: on in the ESP32 port's feature level and the unix
port's; where it is not, only the agent's tracebacks reach the ring.)
"""

import builtins
import io

from agent import coap, port
from agent.endpoint import RequestError
from agent.port import const, sleep_ms

_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_POST = const(2)
_URI_PATH = const(11)
_URI_QUERY = const(15)

# a few lines, or a traceback of a few frames: with one batch every 2 s the master takes them long before the ring
# is full; a master that is away gets the newest 384 bytes
_SIZE = const(384)
_EVERY_MS = const(2000)  # the rate limit: one batch at most this often

_print = builtins.print


class Ring(io.IOBase):
    """The last _SIZE bytes printed, oldest first, in a circular buffer made once. A stream (io.IOBase, so
    sys.print_exception can write a traceback into it)."""

    def __init__(self):
        super().__init__()
        self.buf = bytearray(_SIZE)
        self.start = 0  # where the oldest byte is
        self.size = 0
        self.lost = 0  # bytes overwritten before the master took them

    def write(self, data):
        # byte by byte: prints are rare and short, and this allocates nothing
        buf = self.buf
        for b in data.encode() if isinstance(data, str) else data:
            if self.size == _SIZE:
                self.start = (self.start + 1) % _SIZE
                self.lost += 1
            else:
                self.size += 1
            buf[(self.start + self.size - 1) % _SIZE] = b
        return len(data)

    def peek(self, limit):
        """Up to `limit` of the oldest bytes, cut after their last newline if they hold one (still in the ring)."""
        n = min(self.size, limit)
        out = bytearray(n)
        buf, start = self.buf, self.start
        for i in range(n):
            out[i] = buf[(start + i) % _SIZE]
        end = n
        while end and out[end - 1] != 10:
            end -= 1
        return memoryview(out)[: end or n]

    def drop(self, n):
        self.start = (self.start + n) % _SIZE
        self.size -= n


RING = Ring()


def _captured(*args, sep=" ", end="\n", file=None):
    if file is None:
        _print(*args, sep=sep, end=end)
        RING.write(sep.join([str(a) for a in args]) + end)
    else:
        _print(*args, sep=sep, end=end, file=file)


def install():
    """Every print() from now on also goes to the ring, and so do the agent's tracebacks."""
    try:
        builtins.print = _captured
    except AttributeError:
        pass  # a build that cannot override builtins: tracebacks only
    port.LOG = RING


async def send(endpoint, registration, device_id):
    """Forever: what the ring holds goes to the master, oldest first, once it has a registration."""
    path = coap.path_options(_URI_PATH, "l") + [(_CONTENT_FORMAT, b"")]  # 0: text/plain; charset=utf-8
    query = "ep=" + device_id
    while True:
        await sleep_ms(_EVERY_MS)
        if not RING.size or registration.location is None:
            continue
        data = RING.peek(_SIZE)  # the whole ring fits one datagram with OSCORE and the options
        lost = RING.lost
        options = path + [(_URI_QUERY, query.encode())]
        if lost:
            options.append((_URI_QUERY, b"lost=%d" % lost))
        try:
            response = await endpoint.request(registration.master, _POST, options, data)
        except RequestError:
            continue  # kept: the next batch tries again (and the ring overwrites the oldest meanwhile)
        if response.code == _CHANGED:
            # bytes the ring overwrote meanwhile were this batch's first (sent, not lost), then newer ones (lost)
            overwritten = RING.lost - lost
            RING.drop(max(len(data) - overwritten, 0))
            RING.lost = max(overwritten - len(data), 0)
