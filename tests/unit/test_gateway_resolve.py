"""The master resolves a board's address once, not for every request (gateway/resolve.py): a module push is 21
protected requests to one address, and aiocoap looked each one up anew (getaddrinfo in a worker thread, then a
socket to check the route). A host name is still looked up each time.

A stand-in board on a UDP socket answers GET /stats, plain (a board not paired here) and under OSCORE (paired);
the event loop's getaddrinfo is wrapped to count the look-ups, and every answer is checked."""

from __future__ import annotations

import asyncio
import socket

import aiocoap
import msgspec
import pytest
from aiocoap.numbers.codes import Code

from pifleet.gateway.coap import Gateway
from tests.support.masters import free_port
from tests.support.oscore import Peer

SECRET = bytes(range(32))
OSCORE_ID = b"\x09"


class StatsBoard(asyncio.DatagramProtocol):
    """Answers every GET /stats with how many requests it has taken."""

    def __init__(self, peer: Peer | None) -> None:
        self.peer = peer
        self.taken = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        msg = aiocoap.Message.decode(data)
        if msg.mtype != aiocoap.CON:
            return
        request, request_id = self.peer.unprotect(msg) if self.peer is not None else (msg, None)
        assert request.opt.uri_path == ("stats",)
        self.taken += 1
        answer = aiocoap.Message(code=Code.CONTENT, payload=msgspec.json.encode({"rx": self.taken}))
        if self.peer is not None:
            answer, _ = self.peer.protect(answer, request_id)
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, msg.mid, msg.token
        self.transport.sendto(answer.encode(), addr)


class CountedLookups:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.hosts: list[str] = []
        self._inner = loop.getaddrinfo

        async def getaddrinfo(host, *args, **kwargs):
            self.hosts.append(host)
            return await self._inner(host, *args, **kwargs)

        loop.getaddrinfo = getaddrinfo


@pytest.mark.parametrize("paired", [False, True], ids=["plain", "oscore"])
async def test_a_boards_address_is_looked_up_once_a_host_name_each_time(tmp_path, paired):
    loop = asyncio.get_running_loop()
    board_port = free_port(socket.SOCK_DGRAM)
    board = StatsBoard(Peer(SECRET, OSCORE_ID, b"") if paired else None)
    transport, _ = await loop.create_datagram_endpoint(lambda: board, local_addr=("127.0.0.1", board_port))
    gateway = Gateway("127.0.0.1", free_port(socket.SOCK_DGRAM), keys_dir=tmp_path / "oscore")
    await gateway.start(registry=None)
    if paired:
        gateway.pair("esp-r", OSCORE_ID, SECRET, "127.0.0.1", board_port)
    lookups = CountedLookups(loop)
    try:
        answers = [await gateway.stats("127.0.0.1", board_port) for _ in range(30)]
        assert answers == [{"rx": n} for n in range(1, 31)]
        assert lookups.hosts == ["127.0.0.1"]  # the first request only
        if not paired:  # (a paired board is bound to its address: a name would not find its keys)
            for n in range(31, 34):
                assert await gateway.stats("localhost", board_port) == {"rx": n}
            assert lookups.hosts == ["127.0.0.1"] + ["localhost"] * 3
    finally:
        await gateway.stop()
        transport.close()
