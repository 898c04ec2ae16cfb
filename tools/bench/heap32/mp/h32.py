"""heap32, board side: stand-ins for what a real ESP32 has in C, and the hooks a driver steps the agent with.

Not part of the agent and never on a board. socket, machine and network are replaced by the smallest objects
the agent and the blind role use; under the wasm32 build also cryptolib (AES in Python, allocating nothing, as
the C code does) and os.urandom, which that build lacks. asyncio.core._io_queue gets a stand-in that wakes the
task parked on a socket when the driver delivers a datagram (the ESP32 port's poller does that for a real one).
peak[0] is the highest gc.mem_alloc() seen when the agent sends a datagram or asks for a collection:
tools/bench/board_heap.py, "heap32".
"""

import asyncio
import gc
import os
import random
import sys
import time

from micropython import const

core = asyncio.core
WASM = sys.platform == "webassembly"
outbox = []  # (data, addr) the agent sent, until the driver takes them
peak = [0]
socks = []


def note():
    a = gc.mem_alloc()
    if a > peak[0]:
        peak[0] = a


def collect():
    note()
    gc.collect()


_resume = None  # the Event a paused agent waits on (made at the first pause, on the running loop)


async def pause():
    """The agent's collection point between the phases of a long step (agent.port.pause). The 64-bit port
    collects right here; the wasm32 build cannot below the top level, so the agent waits while the driver
    collects there (Interpreter.step answers -1, the driver runs gc.collect() and resume())."""
    global _resume
    note()
    if not WASM:
        gc.collect()
        return
    if _resume is None:
        _resume = asyncio.Event()
    _resume.clear()
    _js.want_gc()
    await _resume.wait()


def resume():
    _resume.set()


class _Sock:
    def __init__(self, *args):
        self.inbox = []
        self.waiting = None
        self.port = 0

    def setsockopt(self, *args):
        pass

    def setblocking(self, flag):
        pass

    def bind(self, addr):
        self.port = addr[1]
        socks.append(self)

    def sendto(self, data, addr):
        note()
        outbox.append((bytes(data), addr))
        if WASM:
            _js.sent()

    def recvfrom(self, n):
        if not self.inbox:
            raise OSError(11)
        return self.inbox.pop(0)

    def close(self):
        if self in socks:
            socks.remove(self)


class socket:  # noqa: N801 — stands in for the module
    AF_INET = 2
    SOCK_DGRAM = 2
    SOL_SOCKET = 1
    SO_REUSEADDR = 4
    socket = _Sock

    @staticmethod
    def getaddrinfo(host, port, *args):
        return [(2, 2, 0, "", (host, port))]


class _IOQueue:
    def __init__(self):
        self.map = {}

    def queue_read(self, s):
        if s.inbox:  # delivered while the task was busy: it goes on at once
            core._task_queue.push(core.cur_task)
            return
        s.waiting = core.cur_task
        core.cur_task.data = self
        self.map[id(s)] = s

    def remove(self, task):
        for k in list(self.map):
            if self.map[k].waiting is task:
                self.map[k].waiting = None
                del self.map[k]

    def wait_io_event(self, dt):  # the unix port's run loop: nothing to poll, the driver delivers
        if dt > 0:
            time.sleep_ms(min(dt, 5))


def deliver(data, port=5683):
    for s in socks:
        if s.port == port:
            # a new address each time, as the ESP32 port's recvfrom makes one (tuple and string) per datagram
            s.inbox.append((data, ("10.0.0." + str(1), 5683)))
            t = s.waiting
            if t is not None:
                s.waiting = None
                core._io_queue.map.pop(id(s), None)
                t.data = None
                core._task_queue.push(t)
            return True
    return False


def take():
    """The datagrams sent since the last take(), as 'port hex' lines."""
    out = "\n".join("%d %s" % (addr[1], data.hex()) for data, addr in outbox)
    outbox.clear()
    if WASM:
        _js.taken()
    return out


class _Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2

    def __init__(self, n, mode=-1, pull=-1, value=None):
        self.n = n
        self.v = value or 0

    def init(self, *args, **kw):
        pass

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v

    def on(self):
        self.v = 1

    def off(self):
        self.v = 0


class _WDT:
    def __init__(self, id=0, timeout=0):
        pass

    def feed(self):
        pass


class machine:  # noqa: N801
    Pin = _Pin
    WDT = _WDT

    @staticmethod
    def reset():
        raise SystemExit


class _WLAN:
    def __init__(self, i=0):
        pass

    def active(self, *a):
        return True

    def isconnected(self):
        return True

    def connect(self, *a):
        pass

    def ifconfig(self):
        return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")

    def config(self, name):
        return b"\x24\x0a\x00\x00\x00\x02"


class network:  # noqa: N801
    STA_IF = 0
    WLAN = _WLAN


def _sbox():
    # AES S-box from the multiplicative inverse in GF(2^8) and the affine map (FIPS 197 §5.1.1)
    box = bytearray(256)
    p = q = 1
    while True:
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)  # p * 3
        q ^= q << 1  # q / 3
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ ((q << 1) | (q >> 7)) ^ ((q << 2) | (q >> 6)) ^ ((q << 3) | (q >> 5)) ^ ((q << 4) | (q >> 4))
        box[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return box


_S = None


def _xt(b):
    return ((b << 1) ^ 0x1B) & 0xFF if b & 0x80 else b << 1


class _Aes:
    """AES-128 encryption of one block, in place and without allocating (as cryptolib's C code does): the
    wasm32 build has no cryptolib. ECB only (agent/ccm.py); the round keys are made once per key."""

    def __init__(self, key, mode, iv=None):
        w = bytearray(176)
        w[:16] = key
        rcon = 1
        for i in range(16, 176, 4):
            a = w[i - 4]
            b = w[i - 3]
            c = w[i - 2]
            d = w[i - 1]
            if i % 16 == 0:
                a, b, c, d = _S[b] ^ rcon, _S[c], _S[d], _S[a]  # once per key: a tuple here does not matter
                rcon = _xt(rcon)
            w[i] = w[i - 16] ^ a
            w[i + 1] = w[i - 15] ^ b
            w[i + 2] = w[i - 14] ^ c
            w[i + 3] = w[i - 13] ^ d
        self.w = w
        self.t = bytearray(16)

    def encrypt(self, src, dst):
        w = self.w  # no tuple unpacking below: MicroPython builds a tuple for more than three names
        t = self.t
        S = _S
        for i in range(16):
            dst[i] = src[i] ^ w[i]
        for r in range(1, 11):
            for i in range(16):  # SubBytes and ShiftRows: byte i of column c moves to column c - row
                t[i] = S[dst[(i + 4 * (i % 4)) % 16]]
            k = 16 * r
            if r == 10:
                for i in range(16):
                    dst[i] = t[i] ^ w[k + i]
                return
            for c in range(0, 16, 4):  # MixColumns, then AddRoundKey
                a0 = t[c]
                a1 = t[c + 1]
                a2 = t[c + 2]
                a3 = t[c + 3]
                e = a0 ^ a1 ^ a2 ^ a3
                dst[c] = a0 ^ e ^ _xt(a0 ^ a1) ^ w[k + c]
                dst[c + 1] = a1 ^ e ^ _xt(a1 ^ a2) ^ w[k + c + 1]
                dst[c + 2] = a2 ^ e ^ _xt(a2 ^ a3) ^ w[k + c + 2]
                dst[c + 3] = a3 ^ e ^ _xt(a3 ^ a0) ^ w[k + c + 3]


class cryptolib:  # noqa: N801
    aes = _Aes


# the board's heap, what gc.mem_alloc() + gc.mem_free() add up to on it: a plain ESP32's 112 KiB, or the virtual
# ESP32's heap for the 64-bit port (harness.standins() writes it in; a const, so no name of its own is interned)
_HEAP = const(114688)


def install():
    import gc as real

    class gc:  # noqa: N801 — gc with the board's heap in mem_free(): this build's own is 4 MiB (8 MiB on 64 bits)
        # so that it never collects by itself, which would make the agent's choices by heap (agent/role.py) unlike
        # a board's. Named and built of names the board has: the interned-string pool stays as it was.
        collect = real.collect
        mem_alloc = real.mem_alloc
        threshold = real.threshold
        enable = real.enable
        disable = real.disable

        @staticmethod
        def mem_free():
            return _HEAP - real.mem_alloc()

    sys.modules["gc"] = gc
    sys.modules["socket"] = socket
    sys.modules["machine"] = machine
    sys.modules["network"] = network
    core._io_queue = _IOQueue()
    if WASM:
        global _js, _S
        import h32js as _js

        _S = _sbox()
        sys.modules["cryptolib"] = cryptolib
        os.urandom = lambda n: bytes(random.getrandbits(8) for _ in range(n))
        # this build's files raise the host's errno (ENOENT is 44), a board's littlefs raises errno.ENOENT (2)
        import builtins

        _open = builtins.open

        def open_(*args):
            try:
                return _open(*args)
            except OSError as exc:
                raise OSError(2 if exc.errno == 44 else exc.errno)

        builtins.open = open_
    gc.collect()
