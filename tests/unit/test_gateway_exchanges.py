"""A command the master stopped waiting for does not hold back the next one (gateway/exchanges.py): over a lossy link
its retransmissions kept aiocoap's one exchange per peer busy for up to 93 s, and the job's retry sat behind it.

A stand-in board on a UDP socket never answers the first command and answers every later one at once; plain CoAP
(a board not paired here) and OSCORE (a paired board) both."""

from __future__ import annotations

import asyncio
import socket
import time

import aiocoap
import msgspec
import pytest
from aiocoap.numbers.codes import Code

from pifleet.errors import BoardTimeoutError
from pifleet.gateway.coap import Gateway
from tests.support.masters import free_port
from tests.support.oscore import Peer

SECRET = bytes(range(32))
OSCORE_ID = b"\x07"


class SilentFirst(asyncio.DatagramProtocol):
    """A board that never hears the first command (every transmission of it is lost) and answers the others."""

    def __init__(self, peer: Peer | None) -> None:
        self.peer = peer
        self.seen: list[tuple[float, int]] = []  # (when, message id) of every datagram that arrived
        self.first_mid: int | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        msg = aiocoap.Message.decode(data)
        self.seen.append((time.monotonic(), msg.mid))
        if self.first_mid is None:
            self.first_mid = msg.mid
        if msg.mid == self.first_mid or msg.mtype != aiocoap.CON:
            return
        request = msg
        if self.peer is not None:
            request, request_id = self.peer.unprotect(msg)
        eid = msgspec.json.decode(request.payload)["eid"]
        answer = aiocoap.Message(code=Code.CHANGED, payload=msgspec.json.encode({"eid": eid, "ok": True, "result": {}}))
        if self.peer is not None:
            answer, _ = self.peer.protect(answer, request_id)
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, msg.mid, msg.token  # piggy-backed on the ACK
        self.transport.sendto(answer.encode(), addr)

    def transmissions(self, mid: int | None) -> list[float]:
        return [at for at, seen in self.seen if seen == mid]


@pytest.mark.parametrize("paired", [False, True], ids=["plain", "oscore"])
async def test_a_timed_out_command_stops_and_the_next_goes_out_at_once(tmp_path, paired):
    loop = asyncio.get_running_loop()
    board_port = free_port(socket.SOCK_DGRAM)
    board = SilentFirst(Peer(SECRET, OSCORE_ID, b"") if paired else None)
    transport, _ = await loop.create_datagram_endpoint(lambda: board, local_addr=("127.0.0.1", board_port))
    gateway = Gateway("127.0.0.1", free_port(socket.SOCK_DGRAM), keys_dir=tmp_path / "oscore")
    await gateway.start(registry=None)
    if paired:
        gateway.pair("esp-x", OSCORE_ID, SECRET, "127.0.0.1", board_port)
    try:
        sent = time.monotonic()
        with pytest.raises(BoardTimeoutError):
            await gateway.command("esp-x", "127.0.0.1", board_port, "blind", "move", "e1", {}, timeout=1.0)
        # the retry goes out now, not after the first command's retransmissions end (62-93 s), and succeeds
        second = time.monotonic()
        answer = await gateway.command("esp-x", "127.0.0.1", board_port, "blind", "move", "e1", {}, timeout=2.0)
        assert answer == {}
        assert time.monotonic() - second < 1.0, board.seen
        # the first command was sent once and never again: no retransmission after its caller gave up
        await asyncio.sleep(max(0.0, sent + 3.2 - time.monotonic()))  # ACK_TIMEOUT x 1.5: its first retransmission
        assert board.transmissions(board.first_mid) == [board.seen[0][0]], board.seen
    finally:
        await gateway.stop()
        transport.close()


class SlowRegistry:
    """A registry whose registration update takes 0.3 s (a database commit on a busy Pi)."""

    states = None

    async def heartbeat(self, registration_id, device_id, lifetime_s, address, port) -> bool:
        await asyncio.sleep(0.3)
        return True


async def test_an_answer_ready_within_a_second_goes_back_in_the_ack(tmp_path):
    # a separate response is a Confirmable of the master's own, queued behind any command in flight to that board
    # (one exchange per peer): the board's registration update went unanswered for as long as the command took
    loop = asyncio.get_running_loop()
    port = free_port(socket.SOCK_DGRAM)
    gateway = Gateway("127.0.0.1", port, keys_dir=tmp_path / "oscore")
    await gateway.start(registry=SlowRegistry())
    gateway.pair("esp-x", OSCORE_ID, SECRET, None, None)
    board = Peer(SECRET, OSCORE_ID, b"")
    answers: asyncio.Queue[aiocoap.Message] = asyncio.Queue()

    class Board(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            answers.put_nowait(aiocoap.Message.decode(data))

    transport, _ = await loop.create_datagram_endpoint(Board, local_addr=("127.0.0.1", 0))
    try:
        update = aiocoap.Message(code=Code.POST, uri_path=("rd", "r1"))
        protected, request_id = board.protect(update)
        protected.mtype, protected.mid, protected.token = aiocoap.CON, 4711, b"\x01\x02"
        transport.sendto(protected.encode(), ("127.0.0.1", port))
        first = await asyncio.wait_for(answers.get(), 2.0)
        assert (first.mtype, first.mid) == (aiocoap.ACK, 4711) and first.code != Code.EMPTY, first
        inner, _ = board.unprotect(first, request_id)
        assert inner.code == Code.CHANGED
        await asyncio.sleep(0.3)
        assert answers.empty()  # nothing more: no separate response to acknowledge
    finally:
        transport.close()
        await gateway.stop()
