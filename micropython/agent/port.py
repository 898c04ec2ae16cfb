"""The edge between the agent and its runtime: MicroPython (ESP32 or unix port) or CPython.

Layer: device side, lowest. This is the only agent module that may test which runtime it runs on; the rest
of the agent imports the names below and stays neutral. It must not contain protocol or application logic.
"""

import asyncio
import json  # noqa: F401  (re-exported, as os and time: see below)
import os
import socket
import sys
import time

# json, os and time for the agent's modules that are loaded for one request and forgotten: MicroPython does not keep
# a built-in module in sys.modules, and an `import json` looks for a json.py on sys.path (the flash's littlefs)
# before it takes the built-in one: six stat()s of files that are not there at each import (0.27 ms on the virtual
# board, and longer on a board's flash). `from agent.port import json` finds this module loaded.

IS_MICROPYTHON = sys.implementation.name == "micropython"
# What the board says it is, for adoption lists: None means sys.implementation._machine ("Generic ESP32 module with
# ESP32" on a plain ESP32). The virtual ESP32 (micropython/shims/_boot.py) puts that name here: the unix port's
# own would be "linux [GCC …] version".
MACHINE = None
LOG = None  # agent/log.py's ring, once installed: tracebacks are written there too
AGENT = None  # the running agent (set by agent/setup.py): agent/state.py sends through it

if IS_MICROPYTHON:
    from micropython import const  # noqa: F401  (re-exported)

    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add

    def print_exception(exc):
        sys.print_exception(exc)
        if LOG is not None:
            sys.print_exception(exc, LOG)  # for the master too (agent/log.py)

    wait_for_ms = asyncio.wait_for_ms
    sleep_ms = asyncio.sleep_ms

    def reset_loop():
        """Forget every task of an event loop that ended by an exception (MicroPython keeps them queued)."""
        asyncio.new_event_loop()

    async def _readable(sock):
        # MicroPython's asyncio parks a task on a socket by yielding after queue_read(); this is what its
        # own StreamReader does. There is no public call for a datagram socket, so use the same hook.
        yield asyncio.core._io_queue.queue_read(sock)

    import gc

    collect = gc.collect

    async def pause():
        """A collection point between the phases of a long step (a role switch). The heap32 harness waits here
        for a collection at the top level: its wasm32 build cannot collect below it (docs/agent.md, "Heap")."""
        gc.collect()

    async def recvfrom(sock, size):
        """Wait for one datagram; return (data, raw_addr). raw_addr can be passed back to sendto()."""
        short = 0  # since when the heap has had no `size` contiguous bytes for it
        while True:
            await _readable(sock)
            try:
                return sock.recvfrom(size)
            except OSError as exc:
                # EAGAIN after a spurious wake-up: wait again; anything else is the caller's problem.
                if exc.errno != 11:
                    raise
            except MemoryError:
                # recvfrom needs `size` contiguous bytes (there is no recvfrom_into): compact and retry; the
                # datagram waits in the socket meanwhile. A heap without such a piece for 5 s will not get one (what
                # holds it may wait for this very datagram, as an upload does): the board restarts rather than spin
                # on it for good, its watchdog fed by the acker (docs/agent.md, "Room for the next datagram")
                short = short or ticks_ms()
                if ticks_diff(ticks_ms(), short) > 5000:
                    print("port: no room: restarting")
                    __import__("machine").reset()
                gc.collect()

else:  # the agent under CPython (process targets, tests): its edge is a module a board never loads
    from agent.cpython import (  # noqa: F401  (re-exported)
        collect,
        const,
        pause,
        print_exception,
        recvfrom,
        reset_loop,
        sleep_ms,
        ticks_add,
        ticks_diff,
        ticks_ms,
        wait_for_ms,
    )


def forget(name):
    """Drop agent module `name` (imported for one job: boot, adoption, a role switch, an mDNS query) so that its
    code can be collected; the next `from agent import NAME` loads it again."""
    sys.modules.pop("agent." + name, None)
    package = sys.modules.get("agent")
    if package is not None and name in package.__dict__:
        delattr(package, name)


def sockaddr(host, port):
    """An address in the form this runtime's sendto()/bind() accept."""
    return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]


def peer_of(raw):
    """(ip_string, port) of an address returned by recvfrom().

    The unix port returns the raw struct sockaddr as bytes; the ESP32 port and CPython return a tuple.
    """
    if isinstance(raw, tuple):
        return raw[0], raw[1]
    family, ip, port = socket.sockaddr(raw)
    return socket.inet_ntop(family, ip), port


def udp_socket(host, port):
    """A non-blocking UDP socket bound to (host, port); on an ESP32 to (0.0.0.0, port), whatever `host` is.

    A board's address is the one DHCP gave at boot; after the link drops the lease may bring another, and a
    socket bound to the old one would stop working. Virtual boards and process targets keep `host`: several
    share one machine, each on its own 127.0.0.N and the same port, and the master tells them apart by the
    address they send from."""
    if sys.platform == "esp32":
        host = "0.0.0.0"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr(host, port))
    sock.setblocking(False)
    return sock


def random_bytes(n):
    return os.urandom(n)


def aes_ecb_encryptor(key):
    """enc(src, dst): AES of one 16-byte block of src into dst (src may be dst), for AES-CCM (agent/ccm.py).

    cryptolib's ECB object on MicroPython (one object per key, reused for every block); `cryptography`
    under CPython.
    """
    if IS_MICROPYTHON:
        from cryptolib import aes

        return aes(key, 1).encrypt  # mode 1: ECB
    from agent.cpython import aes_ecb_encryptor

    return aes_ecb_encryptor(key)
