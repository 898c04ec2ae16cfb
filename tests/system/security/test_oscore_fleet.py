"""OSCORE between the master and boards it flashed: what gets through, and what is refused — replayed, altered,
unprotected, from an unknown or revoked board, or claiming another board's identity. The attacker here knows
the wire format and, for the replay and the claim, even real keys; it is played by raw UDP and aiocoap's own
OSCORE classes."""

from __future__ import annotations

import json
import socket
import time

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from pifleet.sim import VirtualBoard
from pifleet.sim.firmware import build_image
from tests.support.oscore import Peer
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN


def datagram(msg: aiocoap.Message, mid: int) -> bytes:
    msg.mtype, msg.mid, msg.token = aiocoap.CON, mid, mid.to_bytes(2, "big")
    return msg.encode()


def exchange(address: tuple[str, int], data: bytes) -> aiocoap.Message:
    """One datagram out, its answer back (raw UDP: nothing in between protects or retries anything)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(data, address)
        answer, _ = sock.recvfrom(2048)
    return aiocoap.Message.decode(answer)


def plain_request(code, path: str, payload: bytes = b"", query: tuple[str, ...] = ()) -> aiocoap.Message:
    msg = aiocoap.Message(code=code, payload=payload)
    msg.opt.uri_path = tuple(path.split("/"))
    msg.opt.uri_query = query
    return msg


def keys_of(board: VirtualBoard) -> tuple[bytes, bytes]:
    """(secret, OSCORE id) as flashing wrote them into the board's config.json."""
    config = json.loads(board.read_files()["config.json"])
    return bytes.fromhex(config["secret"]), bytes.fromhex(config["oscore_id"])


@pytest.fixture
def flashed(master, tmp_path):
    """Erased virtual boards, flashed by the master (real esptool), online: the master knows their keys."""
    r = master.post(
        "/api/firmware", content=build_image("esp32", "v1.24.1"), headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code in (200, 201), r.text
    boards = []

    def make(name: str) -> tuple[VirtualBoard, dict]:
        board = VirtualBoard(name, tmp_path / name, erased=True)
        board.start()
        boards.append(board)
        flash(master, board, name)
        return board, wait_until(
            lambda: (d := master.device(name)) and d["online"] and d["capabilities"] and d,
            timeout=30,
            what=f"{name} online",
            explain=board.console_text,
        )

    yield make
    for board in boards:
        board.stop()


def flash(master, board: VirtualBoard, name: str) -> dict:
    wait_until(
        lambda: any(b["port"] == board.serial_port for b in master.get("/api/boards")),
        timeout=10,
        what="the board on the USB list",
        explain=master.log_tail,
    )
    r = master.post("/api/flash", json={"port": board.serial_port, "name": name, "role": "blind"})
    assert r.status_code == 202, r.text
    job = wait_until(
        lambda: (j := master.get(f"/api/flash/{r.json()['id']}"))["state"] in ("done", "failed") and j,
        timeout=60,
        what="the flash job",
        explain=master.log_tail,
    )
    assert job["state"] == "done", job["error"]
    return job


def run_move(master, device: str, name: str) -> dict:
    job = {
        "name": name,
        "target": {"device": device},
        "trigger": {"type": "manual"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 0.3}},
    }
    assert master.post("/api/jobs", job).status_code == 201
    assert master.post(f"/api/jobs/{name}/run").status_code in (200, 201, 202)
    return wait_until(
        lambda: (e := master.executions(name)) and e[0]["state"] in ("succeeded", "failed") and e[0],
        timeout=20,
        what=f"{name} to finish",
        explain=master.log_tail,
    )


def downs(board: VirtualBoard) -> int:
    return len(high_periods(board.pin_history(), DOWN_PIN))


def test_a_paired_board_obeys_only_protected_fresh_untampered_commands(master, flashed):
    board, device = flashed("porch")
    assert run_move(master, "porch", "through-master")["state"] == "succeeded"  # the master's path: OSCORE
    assert downs(board) == 1
    secret, oscore_id = keys_of(board)
    body = json.dumps({"eid": "x1", "params": {"direction": "down", "seconds": 0.3}}).encode()

    # unprotected: refused, nothing moves
    answer = exchange(board.address, datagram(plain_request(Code.POST, "a/blind/move", body), 100))
    assert answer.code == Code.UNAUTHORIZED

    # with the real keys (the master's, copied: only to show the next refusals are OSCORE's doing)
    master_copy = Peer(secret, b"", oscore_id, seq=10_000)
    protected, rid = master_copy.protect(plain_request(Code.POST, "a/blind/move", body))
    first = datagram(protected, 101)
    answer = exchange(board.address, first)
    inner, _ = master_copy.unprotect(answer, rid)
    assert inner.code == Code.CHANGED and json.loads(inner.payload)["ok"]
    wait_until(lambda: downs(board) == 2, what="the second move", explain=master.log_tail)

    # the same protected request again (new message id, so the message layer does not take it for a
    # retransmission): a replay
    replayed = bytearray(first)
    replayed[2:4] = (102).to_bytes(2, "big")
    assert exchange(board.address, bytes(replayed)).code == Code.UNAUTHORIZED

    # altered: one bit of the ciphertext flipped
    protected, rid = master_copy.protect(plain_request(Code.POST, "a/blind/move", body.replace(b"x1", b"x2")))
    tampered = bytearray(datagram(protected, 103))
    tampered[-3] ^= 0x01
    assert exchange(board.address, bytes(tampered)).code in (Code.BAD_REQUEST, Code.UNAUTHORIZED)

    # keys of a board that does not exist
    stranger = Peer(b"\x42" * 32, b"", b"\x77\x77")
    protected, _ = stranger.protect(plain_request(Code.POST, "a/blind/move", body.replace(b"x1", b"x3")))
    assert exchange(board.address, datagram(protected, 104)).code in (Code.BAD_REQUEST, Code.UNAUTHORIZED)

    assert "refused a request" in board.console_text()
    # and the board serves on. (Not through the master: the copy of its keys has moved the board's replay
    # window past the master's own sequence numbers — which no one without the keys can do.)
    sent = time.time()
    protected, rid = master_copy.protect(plain_request(Code.POST, "a/blind/move", body.replace(b"x1", b"x4")))
    inner, _ = master_copy.unprotect(exchange(board.address, datagram(protected, 105)), rid)
    assert inner.code == Code.CHANGED
    wait_until(lambda: downs(board) >= 3, what="the last move", explain=board.console_text)
    # none of the refused ones moved anything: the board took the datagrams in order and answered this move
    # only once it had run, so a move one of them had started would be a down period before this one
    assert downs(board) == 3 and high_periods(board.pin_history(), DOWN_PIN)[-1][0] >= sent


def test_the_master_refuses_registrations_that_are_not_the_boards_own(master, flashed):
    a, device_a = flashed("east")
    b, _ = flashed("west")
    secret_b, id_b = keys_of(b)
    rd = ("rd",)
    query = ("ep=" + device_a["id"], "lt=60")

    # unprotected, claiming a paired board
    answer = exchange(master.coap, datagram(plain_request(Code.POST, "/".join(rd), b"", query), 200))
    assert answer.code == Code.UNAUTHORIZED

    # protected by board B, claiming to be board A
    as_b = Peer(secret_b, id_b, b"", seq=10_000)
    protected, rid = as_b.protect(plain_request(Code.POST, "rd", b"", query))
    answer = exchange(master.coap, datagram(protected, 201))
    inner, _ = as_b.unprotect(answer, rid)
    assert inner.code == Code.FORBIDDEN and b"claims to be" in inner.payload

    # a kid the master does not know
    stranger = Peer(b"\x42" * 32, b"\x77\x77", b"")
    protected, _ = stranger.protect(plain_request(Code.POST, "rd", b"", ("ep=ghost", "lt=60")))
    assert exchange(master.coap, datagram(protected, 202)).code == Code.UNAUTHORIZED

    counters = master.get("/api/metrics")
    assert counters.get("oscore_refused", 0) >= 2
    log = master.log_text()
    assert f"claims to be {device_a['id']}" in log and "OSCORE required" in log
    assert master.device("east")["online"] and master.device("west")["online"]  # nothing taken over


def test_revoking_a_board_refuses_it_at_once_and_pairing_again_gives_new_keys(master, flashed):
    board, device = flashed("garage")
    secret, oscore_id = keys_of(board)
    r = master.post("/api/devices/garage/revoke")
    assert r.status_code == 200 and not r.json()["online"]

    # the board's own keys no longer open anything at the master
    as_board = Peer(secret, oscore_id, b"", seq=10_000)
    protected, _ = as_board.protect(plain_request(Code.POST, "rd", b"", ("ep=" + device["id"], "lt=60")))
    assert exchange(master.coap, datagram(protected, 300)).code == Code.UNAUTHORIZED
    assert run_move(master, "garage", "after-revoke")["state"] == "failed"
    assert not master.device("garage")["online"]

    flash(master, board, "garage")  # pairing again
    wait_until(lambda: master.device("garage")["online"], timeout=30, what="garage back", explain=board.console_text)
    new_secret, new_id = keys_of(board)
    assert new_secret != secret and new_id != oscore_id
    assert run_move(master, "garage", "after-repair")["state"] == "succeeded"


def test_a_module_push_to_a_paired_board_goes_block_wise_inside_oscore(master, flashed):
    """The whole module push (GET /m, PUT /m/STEM in 1024-byte blocks, PUT /role) is protected like a command."""
    from tests.support.masters import REPO

    board, device = flashed("attic")
    source = (REPO / "capabilities" / "board" / "blind.py").read_text() + "\n# pushed under OSCORE\n"
    r = master.post("/api/modules", {"filename": "blind.py", "source": source})
    assert r.status_code == 201, r.text
    rollout = wait_until(
        lambda: (x := master.get(f"/api/rollouts/{r.json()['rollout']}"))["state"] != "running" and x,
        timeout=60,
        what="the rollout",
        explain=master.log_tail,
    )
    assert rollout["state"] == "succeeded", rollout
    stems = [c["module"] for c in master.device("attic")["capabilities"]]
    assert stems == [r.json()["stem"]]
    assert "refused a request" not in board.console_text()


def test_a_board_the_master_did_not_pair_is_refused(master, tmp_path):
    """A board with its own identity but no keys from this master (flashed elsewhere, or forged) cannot register:
    it is told to be flashed or adopted, and nothing of it appears in the fleet."""
    stranger = VirtualBoard("stranger", tmp_path / "stranger", role="blind", master=master.coap, lifetime=5)
    stranger.start()
    try:
        wait_until(
            lambda: "registration refused: 4.01" in stranger.console_text(),
            timeout=20,
            what="the refusal on the board's console",
            explain=stranger.console_text,
        )
        assert master.device("stranger") is None
        assert "is not paired: flash it from this master or adopt it" in master.log_text()
        assert master.get("/api/metrics").get("oscore_refused", 0) >= 1
    finally:
        stranger.stop()
