"""A virtual blind board (real MicroPython, real sockets) driven by an independent CoAP client (aiocoap)."""

import json
import os
import socket

import aiocoap
from aiocoap.numbers.codes import Code

from pifleet.modules.builds import declarations
from tests.board.conftest import request
from tests.support.masters import REPO
from tests.support.pins import high_periods
from tests.support.waits import wait_until_async

UP, DOWN = 25, 26
# what capabilities/blind.py declares, read from its source as the master reads it
_BLIND = declarations("blind", (REPO / "capabilities" / "board" / "blind.py").read_text())
EXPECTED_CAP = {
    "device": "esp-02e532835cdd",  # the one identity scheme: esp- and the MAC (sim.flash.board_mac of t-blind)
    "caps": [{"name": "blind", "version": _BLIND["version"], "commands": _BLIND["schema"]}],
}


def uri(board, path):
    return "coap://%s:%d%s" % (board.ip, board.listen_port, path)


async def command(client, board, cap, name, eid, **params):
    payload = json.dumps({"eid": eid, "params": params}).encode()
    response = await request(client, Code.POST, uri(board, "/a/%s/%s" % (cap, name)), payload)
    return response.code, json.loads(response.payload)


def assert_interlocked(history):
    levels = {UP: 0, DOWN: 0}
    for t, pin, value in history:
        levels[pin] = value
        assert not (levels[UP] and levels[DOWN]), "both direction pins high at %f" % t


def test_outputs_low_at_boot(blind_board):
    first = blind_board.pin_history()[:2]
    assert sorted((pin, value) for _, pin, value in first) == [(UP, 0), (DOWN, 0)]


async def test_discovery_and_capabilities(blind_board, coap_client):
    core = await request(coap_client, Code.GET, uri(blind_board, "/.well-known/core"))
    assert core.code == Code.CONTENT
    assert core.opt.content_format == 40
    links = core.payload.decode()
    assert '</a/blind/move>;rt="pifleet.cmd";ct=50' in links and "</cap>;ct=50" in links
    cap = await request(coap_client, Code.GET, uri(blind_board, "/cap"))
    assert cap.code == Code.CONTENT and cap.opt.content_format == 50
    described = json.loads(cap.payload)
    assert described["role"] == "blind" and described["failed"] == []
    # the module file is the capability's name and the start of its source's SHA-256 (docs/modules.md)
    assert [c.pop("module")[:6] for c in described["caps"]] == ["blind_"]
    assert {k: described[k] for k in ("device", "caps")} == EXPECTED_CAP
    assert "move" in EXPECTED_CAP["caps"][0]["commands"] and "stop" in EXPECTED_CAP["caps"][0]["commands"]


async def test_move_down_one_second(blind_board, coap_client):
    since = blind_board.pin_history()[-1][0]
    code, body = await command(coap_client, blind_board, "blind", "move", "mv-1", direction="down", seconds=1)
    assert code == Code.CHANGED, body
    assert body["ok"] is True and body["eid"] == "mv-1"
    assert body["result"]["stopped"] == "elapsed" and body["result"]["direction"] == "down"
    history = blind_board.pin_history()
    ((on, off),) = high_periods(history, DOWN, since)
    assert abs((off - on) - 1.0) < 0.1
    assert high_periods(history, UP, since) == []
    assert_interlocked(history)


async def test_reversal_replaces_the_move_and_waits_the_dead_time(blind_board, coap_client):
    import asyncio

    since = blind_board.pin_history()[-1][0]
    long_move = asyncio.create_task(
        command(coap_client, blind_board, "blind", "move", "rv-1", direction="down", seconds=10)
    )
    await wait_until_async(
        lambda: blind_board.pin_level(DOWN), what="the long move down running", explain=blind_board.console_text
    )
    code, body = await command(coap_client, blind_board, "blind", "move", "rv-2", direction="up", seconds=0.3)
    assert code == Code.CHANGED and body["result"]["stopped"] == "elapsed"
    first_code, first = await long_move
    assert first_code == Code.CHANGED and first["result"]["stopped"] == "replaced"
    history = blind_board.pin_history()
    ((_, down_off),) = high_periods(history, DOWN, since)
    ((up_on, _),) = high_periods(history, UP, since)
    assert up_on - down_off >= 0.49  # dead_time_ms = 500
    assert_interlocked(history)


async def test_stop_ends_a_running_move(blind_board, coap_client):
    import asyncio

    moving = asyncio.create_task(command(coap_client, blind_board, "blind", "move", "st-1", direction="up", seconds=10))
    await wait_until_async(
        lambda: blind_board.pin_level(UP), what="the move up running", explain=blind_board.console_text
    )
    code, body = await command(coap_client, blind_board, "blind", "stop", "st-2")
    assert code == Code.CHANGED and body["result"] == {"was_moving": True}
    assert blind_board.pin_level(UP) == 0
    _, first = await moving
    assert first["result"]["stopped"] == "stopped" and first["result"]["ran_ms"] < 10000


async def test_repeated_eid_moves_once(blind_board, coap_client):
    since = blind_board.pin_history()[-1][0]
    code, body = await command(coap_client, blind_board, "blind", "move", "dup-1", direction="down", seconds=0.2)
    assert code == Code.CHANGED and "duplicate" not in body
    code, again = await command(coap_client, blind_board, "blind", "move", "dup-1", direction="down", seconds=0.2)
    assert code == Code.CHANGED and again["duplicate"] is True
    assert again["result"] == body["result"]
    assert len(high_periods(blind_board.pin_history(), DOWN, since)) == 1


async def test_invalid_params_are_refused_naming_the_field(blind_board, coap_client):
    cases = [
        ({"direction": "down", "seconds": "fast"}, "params.seconds"),
        ({"direction": "down", "seconds": 121}, "params.seconds"),
        ({"direction": "sideways", "seconds": 1}, "params.direction"),
        ({"seconds": 1}, "params.direction"),
        ({"direction": "up", "seconds": 1, "speed": 3}, "params.speed"),
    ]
    since = blind_board.pin_history()[-1][0]
    for i, (params, field) in enumerate(cases):
        code, body = await command(coap_client, blind_board, "blind", "move", "bad-%d" % i, **params)
        assert code == Code.BAD_REQUEST, params
        assert body["ok"] is False and body["field"] == field and field in body["error"]
    response = await request(
        coap_client, Code.POST, uri(blind_board, "/a/blind/fly"), json.dumps({"eid": "x", "params": {}}).encode()
    )
    assert response.code == Code.NOT_FOUND
    assert blind_board.pin_history()[-1][0] == since  # nothing moved


async def test_malformed_datagrams_are_dropped_and_counted(blind_board, coap_client):
    before = json.loads((await request(coap_client, Code.GET, uri(blind_board, "/stats"))).payload)
    garbage = [
        os.urandom(1),
        os.urandom(3),
        b"\x40\x01",  # shorter than a header
        b"\x80\x01\x00\x01",  # version 2
        b"\x49\x01\x00\x01" + os.urandom(9),  # token length 9
        b"\x40\x01\x00\x01\xb5ab",  # option longer than the datagram
        b"\x40\x01\x00\x01\xf1\x00",  # reserved option nibble
        b"\x40\x01\x00\x01\xd1",  # truncated extension
        b"\x40\x01\x00\x01\xff",  # payload marker without payload
    ]
    garbage += [b"\x00" + os.urandom(40) for _ in range(10)]  # random bytes, version 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for datagram in garbage:
            raw.sendto(datagram, blind_board.address)
    # The board still answers, and counted every datagram it could not decode.
    after = json.loads((await request(coap_client, Code.GET, uri(blind_board, "/stats"))).payload)
    assert after["dropped"] - before["dropped"] == len(garbage)
    assert after["errors"] == before["errors"]
    assert blind_board.running


async def test_duplicate_confirmable_gets_the_cached_response(blind_board):
    """Retransmitted CON (same MID) is answered from the dedupe cache; the command does not run again."""
    import asyncio

    since = blind_board.pin_history()[-1][0]
    payload = json.dumps({"eid": "cd-1", "params": {"direction": "up", "seconds": 0.1}}).encode()
    # CON POST, MID 0x10e1, token "tk", Uri-Path a/blind/move, then the payload.
    datagram = b"\x42\x02\x10\xe1tk" + b"\xb1a\x05blind\x04move" + b"\xff" + payload
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.setblocking(False)
        raw.bind(("127.0.0.1", 0))
        answers = []
        for _ in range(2):
            await loop.sock_sendto(raw, datagram, blind_board.address)
            answers.append(await asyncio.wait_for(loop.sock_recv(raw, 1500), 5))
    assert answers[0] == answers[1]
    reply = aiocoap.Message.decode(answers[0])
    assert reply.mtype == aiocoap.ACK and reply.mid == 0x10E1 and reply.token == b"tk" and reply.code == Code.CHANGED
    assert len(high_periods(blind_board.pin_history(), UP, since)) == 1


async def test_a_command_for_another_board_does_nothing(blind_board, coap_client):
    """The master names the board it means: an address reused by another board must not move this motor."""
    since = blind_board.pin_history()[-1][0]
    payload = json.dumps(
        {"eid": "ep-1", "ep": "vb-someone-else", "params": {"direction": "down", "seconds": 0.5}}
    ).encode()
    response = await request(coap_client, Code.POST, uri(blind_board, "/a/blind/move"), payload)
    body = json.loads(response.payload)
    assert response.code == Code.BAD_REQUEST and body["field"] == "ep"
    payload = json.dumps({"eid": "ep-2", "ep": "esp-02e532835cdd", "params": {"direction": "down", "seconds": 0.3}})
    response = await request(coap_client, Code.POST, uri(blind_board, "/a/blind/move"), payload.encode())
    assert response.code == Code.CHANGED
    ((on, off),) = high_periods(blind_board.pin_history(), DOWN, since)
    assert abs((off - on) - 0.3) < 0.1
