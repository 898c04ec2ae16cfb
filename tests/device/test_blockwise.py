"""Block-wise transfers (RFC 7959) between a virtual blind board and aiocoap's automatic block-wise client."""

import asyncio
import json
import socket

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from conftest import request
from test_board import DOWN, EXPECTED_CAP, UP, edges, uri


async def small_blocks(client, method, target, szx, payload=b""):
    """A request whose early Block2 asks for 2**(szx+4)-byte answer blocks (RFC 7959 §2.4)."""
    message = aiocoap.Message(code=method, uri=target, payload=payload)
    message.opt.block2 = BlockOption.BlockwiseTuple(0, False, szx)
    return await client.request(message).response


async def raw_exchanges(board, *datagrams):
    """Send datagrams one after the other from one socket (one peer); return the decoded answers."""
    loop = asyncio.get_running_loop()
    answers = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.setblocking(False)
        raw.bind(("127.0.0.1", 0))
        for datagram in datagrams:
            await loop.sock_sendto(raw, datagram, board.address)
            answers.append(aiocoap.Message.decode(await asyncio.wait_for(loop.sock_recv(raw, 1500), 5)))
    return answers


async def test_cap_in_sixteen_byte_blocks_arrives_whole(blind_board, coap_client):
    response = await small_blocks(coap_client, Code.GET, uri(blind_board, "/cap"), 0)
    assert response.code == Code.CONTENT and response.opt.content_format == 50
    assert json.loads(response.payload) == EXPECTED_CAP
    core = await small_blocks(coap_client, Code.GET, uri(blind_board, "/.well-known/core"), 1)
    assert '</a/blind/stop>;rt="pifleet.cmd";ct=50' in core.payload.decode()


async def test_first_block_carries_block2_size2_and_etag(blind_board, coap_client):
    whole = (await request(coap_client, Code.GET, uri(blind_board, "/cap"))).payload  # one 2.05, < 512 bytes
    # CON GET /cap, MID 0x2001, token "b2", Block2 NUM 0 M 0 SZX 1 (32-byte blocks).
    # Then block 3 of the same representation, from the same peer: from the kept copy, same ETag.
    first, third = await raw_exchanges(blind_board, b"\x42\x01\x20\x01b2" + b"\xb3cap" + b"\xc1\x01",
                                       b"\x42\x01\x20\x02b2" + b"\xb3cap" + b"\xc1\x31")
    assert first.code == Code.CONTENT and first.payload == whole[:32]
    assert first.opt.block2 == (0, True, 1) and first.opt.size2 == len(whole) and first.opt.etag
    assert third.payload == whole[96:128] and third.opt.block2 == (3, True, 1)
    assert third.opt.etag == first.opt.etag


async def test_command_answer_in_blocks_runs_once(blind_board, coap_client):
    """A move answered in 16-byte blocks (the first one a separate response): one pulse, one execution."""
    since = blind_board.pin_history()[-1][0]
    payload = json.dumps({"eid": "bw-1", "params": {"direction": "down", "seconds": 1.2}}).encode()
    response = await small_blocks(coap_client, Code.POST, uri(blind_board, "/a/blind/move"), 0, payload)
    assert response.code == Code.CHANGED
    body = json.loads(response.payload)
    assert len(response.payload) > 64 and "duplicate" not in body
    assert body["eid"] == "bw-1" and body["result"]["stopped"] == "elapsed"
    (on, off), = edges(blind_board.pin_history(), DOWN, since)
    assert abs((off - on) - 1.2) < 0.1
    # Asked again (a new exchange), the eid memory answers: the move is one execution, not one per block.
    again = await small_blocks(coap_client, Code.POST, uri(blind_board, "/a/blind/move"), 0, payload)
    assert json.loads(again.payload)["duplicate"] is True
    assert len(edges(blind_board.pin_history(), DOWN, since)) == 1


async def test_a_five_kilobyte_body_arrives_whole(blind_board, coap_client):
    # Unknown top-level keys are ignored by the command; the eid comes last, so only the whole body answers it.
    # Padding in 100-byte strings: one 5 KB string would need 5 KB of contiguous heap a second time.
    body = json.dumps({"pad": ["p" * 96] * 50, "params": {}, "eid": "bw-big-1"}).encode()
    assert len(body) > 5000
    response = await request(coap_client, Code.POST, uri(blind_board, "/a/blind/stop"), body)
    assert response.code == Code.CHANGED, response.payload
    answer = json.loads(response.payload)
    assert answer["eid"] == "bw-big-1" and answer["result"] == {"was_moving": False}


async def test_a_body_beyond_the_limit_is_refused_with_size1(blind_board, coap_client):
    since = blind_board.pin_history()[-1][0]
    body = json.dumps({"pad": "p" * 20000, "params": {"direction": "up", "seconds": 1}, "eid": "bw-huge"})
    response = await request(coap_client, Code.POST, uri(blind_board, "/a/blind/move"), body.encode())
    assert response.code == Code.REQUEST_ENTITY_TOO_LARGE and response.opt.size1 == 8192
    assert blind_board.pin_history()[-1][0] == since  # nothing moved


async def test_malformed_or_out_of_order_blocks_are_refused(blind_board, coap_client):
    before = json.loads((await request(coap_client, Code.GET, uri(blind_board, "/stats"))).payload)
    cases = [
        # Block2 of 4 bytes (longer than RFC 7959 allows): like an unrecognised critical option.
        (b"\x42\x01\x30\x01m1" + b"\xb3cap" + b"\xc4\x00\x00\x00\x10", Code.BAD_OPTION),
        # Two Block2 options.
        (b"\x42\x01\x30\x02m2" + b"\xb3cap" + b"\xc1\x01\x01\x02", Code.BAD_OPTION),
        # Block2 SZX 7 (BERT) over UDP.
        (b"\x42\x01\x30\x03m3" + b"\xb3cap" + b"\xc1\x07", Code.BAD_REQUEST),
        # Block2 NUM far past the end of /cap.
        (b"\x42\x01\x30\x04m4" + b"\xb3cap" + b"\xc2\x7f\xf0", Code.BAD_OPTION),
        # POST /a/blind/stop Block1 NUM 2 with no assembly begun: 4.08.
        (b"\x42\x02\x30\x05m5" + b"\xb1a\x05blind\x04stop" + b"\xd1\x03\x22" + b"\xff" + b"x" * 16,
         Code.REQUEST_ENTITY_INCOMPLETE),
        # Block1 M=1 with a payload shorter than its block size.
        (b"\x42\x02\x30\x06m6" + b"\xb1a\x05blind\x04stop" + b"\xd1\x03\x0a" + b"\xff" + b"x" * 5,
         Code.BAD_REQUEST),
    ]
    for datagram, code in cases:
        answer, = await raw_exchanges(blind_board, datagram)
        assert answer.code == code, datagram
    # The board still answers, and nothing it got was an error of its own.
    after = json.loads((await request(coap_client, Code.GET, uri(blind_board, "/stats"))).payload)
    assert after["errors"] == before["errors"]
    assert blind_board.pin_level(UP) == 0 and blind_board.running
