"""A board's links update after a switch in place (POST /rd/REG_ID with link-format, RFC 9176 §5.3;
gateway/resources.py): what is not link-format text is refused with a 4.00 naming why, counted, and changes
nothing; what is, replaces the registration's links."""

from __future__ import annotations

import asyncio
import socket

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from pifleet.gateway.coap import Gateway
from tests.support.masters import free_port
from tests.support.oscore import Peer

SECRET = bytes(range(32))
OSCORE_ID = b"\x09"
LINKS = '</a/blind/move>;rt="pifleet.cmd",</a/blind/stop>;rt="pifleet.cmd"'


class Registry:
    """The registration r1 of board esp-l, and the links updates that reached it."""

    states = None

    def __init__(self) -> None:
        self.relinked: list[tuple[str, str, str | None]] = []

    async def owner(self, registration_id: str) -> str | None:
        return "esp-l" if registration_id == "r1" else None

    async def relink(self, registration_id, device_id, links, role, lifetime_s, address, port) -> bool:
        self.relinked.append((registration_id, links, role))
        return True


@pytest.fixture
async def board(tmp_path):
    """(send, registry, gateway): send(payload, content_format) posts a protected links update as board esp-l."""
    loop = asyncio.get_running_loop()
    port = free_port(socket.SOCK_DGRAM)
    registry = Registry()
    gateway = Gateway("127.0.0.1", port, keys_dir=tmp_path / "oscore")
    await gateway.start(registry=registry)
    gateway.pair("esp-l", OSCORE_ID, SECRET, None, None)
    peer = Peer(SECRET, OSCORE_ID, b"")
    answers: asyncio.Queue[aiocoap.Message] = asyncio.Queue()

    class Board(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            answers.put_nowait(aiocoap.Message.decode(data))

    transport, _ = await loop.create_datagram_endpoint(Board, local_addr=("127.0.0.1", 0))
    mids = iter(range(100, 200))

    async def send(payload: bytes, content_format: int | None) -> aiocoap.Message:
        update = aiocoap.Message(code=Code.POST, uri_path=("rd", "r1"), uri_query=("role=hall",), payload=payload)
        if content_format is not None:
            update.opt.content_format = content_format
        protected, request_id = peer.protect(update)
        protected.mtype, protected.mid, protected.token = aiocoap.CON, next(mids), b"\x07"
        transport.sendto(protected.encode(), ("127.0.0.1", port))
        answer = await asyncio.wait_for(answers.get(), 5)
        inner, _ = peer.unprotect(answer, request_id)
        return inner

    yield send, registry, gateway
    transport.close()
    await gateway.stop()


async def test_what_is_not_link_format_text_is_refused_naming_why_and_changes_nothing(board):
    send, registry, gateway = board
    refusals = [
        (LINKS.encode(), 0, b"link-format (ct=40)"),  # text/plain
        (LINKS.encode(), None, b"link-format (ct=40)"),  # a payload without its Content-Format
        (b"</a/blind/\xff\xfe>", 40, b"not UTF-8"),
        (b"</a/blind/move>\x00", 40, b"NUL"),
    ]
    for payload, content_format, why in refusals:
        answer = await send(payload, content_format)
        assert answer.code == Code.BAD_REQUEST and why in answer.payload, (content_format, answer, answer.payload)
    assert registry.relinked == []
    assert gateway.counters["updates_refused"] == len(refusals)

    answer = await send(LINKS.encode(), 40)
    assert answer.code == Code.CHANGED
    assert registry.relinked == [("r1", LINKS, "hall")]
