"""gateway/speed.py: aiocoap's message copies and address answers, made cheaper, stay what aiocoap's own give;
protected requests reach a board whole, and one given up at once leaves nothing failing behind."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import socket

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.transports.udp6 import UDP6EndpointAddress

from pifleet.gateway import speed
from pifleet.gateway.coap import Gateway
from tests.support.masters import free_port
from tests.support.oscore import Peer

SECRET, OSCORE_ID = bytes(range(32)), b"\x07"


class _Interface:
    """What an address refers to its socket through (a weak reference)."""


def a_request() -> aiocoap.Message:
    msg = aiocoap.Message(code=Code.PUT, uri="coap://127.0.0.9:5683/m/blind_ab?sha=00", payload=b"x" * 40)
    msg.opt.block1 = BlockOption.BlockwiseTuple(3, True, 5)
    msg.opt.size1 = 4000
    return msg


def test_a_copy_is_the_same_message_and_changes_to_either_stay_their_own():
    speed.install()
    speed.install()  # idempotent
    original = a_request()
    duplicate = original.copy(uri_host=None)
    assert duplicate.opt.encode() == original.opt.encode() and duplicate.payload == original.payload
    # the copy's options are its own: setting, adding or removing one leaves the original as it was
    duplicate.opt.block1 = BlockOption.BlockwiseTuple(4, False, 5)
    duplicate.opt.uri_path = ("other",)
    duplicate.opt.size1 = None
    duplicate.opt.add_option(aiocoap.optiontypes.StringOption(aiocoap.OptionNumber.URI_QUERY, "v=1"))
    assert original.opt.block1 == BlockOption.BlockwiseTuple(3, True, 5)
    assert original.opt.uri_path == ("m", "blind_ab") and original.opt.uri_query == ("sha=00",)
    assert original.opt.size1 == 4000
    assert copy.deepcopy(original.opt).encode() == original.opt.encode()


def test_address_answers_are_aiocoaps():
    speed.install()
    for text, multicast in (
        ("::ffff:127.0.0.3", False),
        ("::ffff:224.0.1.187", True),
        ("ff02::fd", True),
        ("::1", False),
    ):
        address = UDP6EndpointAddress((text, 5683, 0, 0), interface=_Interface())
        assert address.is_multicast is multicast
        assert address._plainaddress() == (text[7:] if text.startswith("::ffff:") else text)
        assert address.hostinfo == (text[7:] if text.startswith("::ffff:") else f"[{text}]")


class _Board(asyncio.DatagramProtocol):
    """A paired board played with aiocoap's OSCORE: it keeps each datagram and answers 2.04 with the length of the
    request's (unprotected) payload, in the ACK."""

    def __init__(self) -> None:
        self.peer = Peer(SECRET, OSCORE_ID, b"")
        self.seen: list[aiocoap.Message] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        msg = aiocoap.Message.decode(data)
        self.seen.append(msg)
        request, request_id = self.peer.unprotect(msg)
        answer = aiocoap.Message(code=Code.CHANGED, payload=b"%d" % len(request.payload))
        answer, _ = self.peer.protect(answer, request_id)
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, msg.mid, msg.token
        self.transport.sendto(answer.encode(), addr)


@pytest.fixture
async def paired(tmp_path):
    """(gateway, board, the board's base URI): a gateway with the board paired at its address."""
    board = _Board()
    port = free_port(socket.SOCK_DGRAM)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: board, local_addr=("127.0.0.1", port)
    )
    gateway = Gateway("127.0.0.1", free_port(socket.SOCK_DGRAM), keys_dir=tmp_path / "oscore")
    await gateway.start(registry=None)
    gateway.pair("esp-x", OSCORE_ID, SECRET, "127.0.0.1", port)
    yield gateway, board, f"coap://127.0.0.1:{port}"
    await gateway.stop()
    transport.close()


async def test_a_protected_request_goes_to_the_board_whole_in_one_datagram(paired):
    # the board reads one datagram (up to 1,280 bytes) and unprotects it whole: a protected request just over
    # aiocoap's 1,124-byte fragmentation threshold must not come as outer blocks (speed.whole_protected_requests)
    gateway, board, base = paired
    request = aiocoap.Message(code=Code.PUT, uri=f"{base}/s/display?text=" + "t" * 150, payload=b"x" * 1000)
    answer = await asyncio.wait_for(gateway.context.request(request).response, 5)
    assert (answer.code, answer.payload) == (Code.CHANGED, b"1000")
    seen = board.seen
    assert len(seen) == 1 and len(seen[0].payload) > 1124, [(m.opt.block1, len(m.payload)) for m in seen]
    assert seen[0].opt.block1 is None and seen[0].opt.oscore is not None


async def test_protected_requests_given_up_at_once_leave_no_failed_task_behind(paired, caplog):
    # a request whose caller stops waiting a few loop turns after asking, by URI (its address still to be
    # resolved, in a worker thread) and to the address a board's answer gave: the request sent whole on the wire
    # is never handed to aiocoap's transport after it was given up (its task then failed inside aiocoap: "Task
    # exception was never retrieved", CI on 990e5dd+), and the next request is answered as before
    gateway, _board, base = paired
    uri = f"{base}/a/blind/stop"
    caplog.set_level(logging.WARNING)

    async def given_up(remote=None) -> None:
        for turns in range(12):
            for _ in range(5):
                msg = aiocoap.Message(code=Code.POST, uri=uri)
                if remote is not None:
                    msg = aiocoap.Message(code=Code.POST, uri_path=("a", "blind", "stop"))
                    msg.remote = remote
                request = gateway.context.request(msg)
                for _ in range(turns):
                    await asyncio.sleep(0)
                request.response.cancel()
                await asyncio.sleep(0.01)

    await given_up()
    first = await asyncio.wait_for(gateway.context.request(aiocoap.Message(code=Code.POST, uri=uri)).response, 5)
    await given_up(first.remote)
    gc.collect()  # a task that failed unseen says so when it is collected
    await asyncio.sleep(0.05)
    again = await asyncio.wait_for(gateway.context.request(aiocoap.Message(code=Code.POST, uri=uri)).response, 5)
    assert (first.code, again.code, again.payload) == (Code.CHANGED, Code.CHANGED, b"0")
    failed = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert failed == [], failed
