"""A request that fails fails alone, and leaves nothing failing behind (gateway/icmp.py, exchanges.py, coap.py).

Found in CI on 2c0422b (tests/system/ota/test_rollout.py): while one board of a rollout was off, a request to
another failed inside aiocoap ("Task exception was never retrieved"). The stand-in boards here answer on loopback,
plain CoAP (a board not paired here) or OSCORE (test_gateway_speed's); a port where nothing listens is a board that
is off (ICMP port unreachable).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.transports.udp6 import UDP6EndpointAddress

from pifleet.gateway.coap import Gateway
from tests.support.masters import free_port
from tests.unit.test_gateway_speed import OSCORE_ID, SECRET
from tests.unit.test_gateway_speed import _Board as _OscoreBoard


class _Board(asyncio.DatagramProtocol):
    """A board not paired here: it answers every request 2.04 `{}` in the ACK."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        msg = aiocoap.Message.decode(data)
        answer = aiocoap.Message(code=Code.CHANGED, payload=b"{}")
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, msg.mid, msg.token
        self.transport.sendto(answer.encode(), addr)


@pytest.fixture
async def gateway(tmp_path, caplog):
    """(gateway, a board's port, failed): `failed()` lists the tasks that failed unseen so far."""
    caplog.set_level(logging.WARNING)
    port = free_port(socket.SOCK_DGRAM)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(_Board, local_addr=("127.0.0.1", port))
    gateway = Gateway("127.0.0.1", free_port(socket.SOCK_DGRAM), keys_dir=tmp_path / "oscore")
    await gateway.start(registry=None)

    async def failed() -> list[str]:
        gc.collect()  # a task that failed unseen says so when it is collected
        await asyncio.sleep(0.05)
        return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]

    yield gateway, port, failed
    await gateway.stop()
    transport.close()


def _stop(port: int, remote=None) -> aiocoap.Message:
    if remote is None:
        return aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/a/blind/stop")
    msg = aiocoap.Message(code=Code.POST, uri_path=("a", "blind", "stop"))
    msg.remote = remote
    return msg


async def test_a_board_that_is_off_fails_its_own_requests_not_the_next_boards(gateway):
    # Linux keeps an ICMP error as the socket's pending error too, and gives it to the next sendmsg, whatever its
    # address: a request to a board that is there failed as "board unreachable" when it was sent before the loop
    # had read the error of a board that was off
    gateway, port, failed = gateway
    answer = await gateway.context.request(_stop(port), handle_blockwise=False).response
    here = answer.remote  # the board that is there, resolved
    off = free_port(socket.SOCK_DGRAM)
    # both asked in one loop turn: on loopback the port-unreachable is back before the first sendmsg returns, and
    # the second is sent before the loop reads it
    ask_off = _stop(off)
    await gateway.context.find_remote_and_interface(ask_off)  # resolved, so that it is sent first
    to_off = gateway.context.request(ask_off, handle_blockwise=False)
    to_here = gateway.context.request(_stop(port, here), handle_blockwise=False)
    answer = await asyncio.wait_for(to_here.response, 5)
    assert (answer.code, answer.payload) == (Code.CHANGED, b"{}")
    with pytest.raises(aiocoap.error.NetworkError):  # and the board that is off gets its own error, at once
        await asyncio.wait_for(to_off.response, 2)
    assert await failed() == []


async def test_a_datagram_the_socket_refuses_fails_its_request_and_nothing_else(gateway):
    # port 0 is refused by sendmsg itself (EINVAL): aiocoap ends the request there and then, and the canceller
    # exchanges.py hands back for a Confirmable request must not be hooked to its ended pipe
    gateway, port, failed = gateway
    answer = await gateway.context.request(_stop(port), handle_blockwise=False).response
    nowhere = UDP6EndpointAddress(("::ffff:127.0.0.1", 0, 0, 0), interface=answer.remote.interface)
    with pytest.raises(aiocoap.error.NetworkError):
        await asyncio.wait_for(gateway.context.request(_stop(port, nowhere), handle_blockwise=False).response, 5)
    again = await asyncio.wait_for(gateway.context.request(_stop(port, answer.remote)).response, 5)
    assert again.code == Code.CHANGED
    assert await failed() == []


async def test_module_pushes_given_up_while_the_boards_name_is_resolved_leave_no_failed_task(gateway):
    # a host name is resolved in a worker thread for every request (an address literal once, resolve.py): a
    # module push given up meanwhile had ended its first block's request before aiocoap's own task handed it on
    gateway, port, failed = gateway
    for turns in range(8):
        for _ in range(4):
            push = asyncio.ensure_future(gateway.put_module("localhost", port, "blind", "00", b"x" * 1500))
            for _ in range(turns):
                await asyncio.sleep(0)
            push.cancel()
            await asyncio.sleep(0.005)
    answer = await gateway.put_module("localhost", port, "blind", "00", b"x" * 1500)
    assert answer == {}
    assert await failed() == []


async def test_requests_given_up_as_their_answers_come_leave_no_error_in_the_log(tmp_path, caplog):
    # the caller stops waiting in the loop turn its answer arrives; aiocoap stops the request one turn later, and
    # set the answer on the cancelled future in between: InvalidStateError, logged as an error from its datagram
    # callback, its error dispatch or its block-wise runner, and under OSCORE handed by exchanges.py to the ended
    # request, where it failed inside aiocoap's logging. A master's log with an error fails its system test
    caplog.set_level(logging.WARNING)
    board = _OscoreBoard()
    paired, plain = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: board, local_addr=("127.0.0.1", paired))
    transport2, _ = await loop.create_datagram_endpoint(_Board, local_addr=("127.0.0.1", plain))
    gateway = Gateway("127.0.0.1", free_port(socket.SOCK_DGRAM), keys_dir=tmp_path / "oscore")
    await gateway.start(registry=None)
    gateway.pair("esp-x", OSCORE_ID, SECRET, "127.0.0.1", paired)
    turns = random.Random(26)
    try:
        # by URI through aiocoap's block-wise layer (which resolves first), or plain to where an answer came from,
        # as the gateway asks (coap.py resolves a URI's host before a plain request, test above)
        remotes = [(await gateway.context.request(_stop(p)).response).remote for p in (paired, plain)]
        for n in range(600):
            port, remote = ((paired, plain)[n % 2], remotes[n % 2])
            blockwise = n % 4 < 2
            request = gateway.context.request(_stop(port, None if blockwise else remote), handle_blockwise=blockwise)
            for _ in range(turns.randrange(12)):
                await asyncio.sleep(0)
            request.response.cancel()
        await asyncio.sleep(0.2)
        answers = [await asyncio.wait_for(gateway.context.request(_stop(p)).response, 5) for p in (paired, plain)]
    finally:
        await gateway.stop()
        transport.close()
        transport2.close()
    assert [a.code for a in answers] == [Code.CHANGED, Code.CHANGED]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], (len(errors), errors[:2])
