"""A command with an effect runs at most once per execution id, also across a power cut (issue 14): the board writes
the eid to a file before it acts (agent/executions.py), and a retry of the same execution after the board came back —
fresh by OSCORE's rules, proven by the board's Echo (RFC 8613 Appendix B.1.2) — does not move the blind again.

The retries are sent by hand with a copy of the master's keys (raw UDP, aiocoap's OSCORE classes), so they carry
exactly the eid of the first send; the master's own path is the second test: a run cut by a power cut ends failed
at once, with the reason, and its retry does not move the blind."""

from __future__ import annotations

import json
import socket

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from tests.support.oscore import Peer
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN
from tests.system.e2e.test_blind_job import online_with_caps

pytestmark = pytest.mark.timeout(300)


def keys_of(board) -> tuple[bytes, bytes]:
    config = json.loads(board.read_files()["config.json"])
    return bytes.fromhex(config["secret"]), bytes.fromhex(config["oscore_id"])


class MasterCopy:
    """Commands to one board as its master sends them, protected with a copy of the master's context; the Echo
    challenge of a board that restarted is answered as aiocoap answers it (the request again, with the Echo)."""

    def __init__(self, board) -> None:
        secret, oscore_id = keys_of(board)
        self.board = board
        self.peer = Peer(secret, b"", oscore_id, seq=10_000)  # far ahead of the master's own numbers
        self.mid = 1000

    def exchange(self, msg: aiocoap.Message) -> aiocoap.Message:
        protected, rid = self.peer.protect(msg)
        self.mid += 1
        protected.mtype, protected.mid, protected.token = aiocoap.CON, self.mid, self.mid.to_bytes(2, "big")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(protected.encode(), self.board.address)
            while True:  # an empty ACK first when the command takes longer than a second, then the response
                answer = aiocoap.Message.decode(sock.recvfrom(2048)[0])
                if answer.code != Code.EMPTY:
                    break
                sock.settimeout(30)
        if answer.mtype == aiocoap.CON:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(
                    aiocoap.Message(mtype=aiocoap.ACK, mid=answer.mid, code=Code.EMPTY).encode(), self.board.address
                )
        inner, _ = self.peer.unprotect(answer, rid)
        return inner

    def send_only(self, eid: str, seconds: float) -> None:
        """A move that gets no time to answer: the board is cut while it runs."""
        protected, _ = self.peer.protect(self.request(eid, seconds))
        self.mid += 1
        protected.mtype, protected.mid, protected.token = aiocoap.CON, self.mid, self.mid.to_bytes(2, "big")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(protected.encode(), self.board.address)

    @staticmethod
    def request(eid: str, seconds: float, echo: bytes | None = None) -> aiocoap.Message:
        body = json.dumps({"eid": eid, "params": {"direction": "down", "seconds": seconds}}).encode()
        msg = aiocoap.Message(code=Code.POST, payload=body)
        msg.opt.uri_path = ("a", "blind", "move")
        if echo is not None:
            msg.opt.echo = echo
        return msg

    def move(self, eid: str, seconds: float) -> tuple[aiocoap.Message, dict]:
        echo = None
        for _ in range(2):
            inner = self.exchange(self.request(eid, seconds, echo))
            if inner.code == Code.UNAUTHORIZED and inner.opt.echo:
                echo = inner.opt.echo  # the board restarted: its replay window is unknown until we prove freshness
                continue
            return inner, json.loads(inner.payload)
        raise AssertionError("the board asked for freshness twice")


def downs(board) -> list[float]:
    return [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)]


def power_cycle(board, master) -> None:
    """kill -9 of the board's interpreter (outputs stay as they were), powered up again, back online."""
    boots = board.console_text().count("agent: listening on")
    board.kill()
    board.start()
    wait_until(
        lambda: board.console_text().count("agent: listening on") > boots,
        timeout=60,
        what=f"{board.name} serving again after its power cut",
        explain=board.console_text,
    )


def test_a_command_sent_again_after_a_power_cut_does_not_move_the_blind_again(master, board_factory):
    board = board_factory("once1", master, role="blind")
    wait_until(lambda: online_with_caps(master, "once1"), what="once1 online", explain=board.console_text)
    master_copy = MasterCopy(board)

    inner, answer = master_copy.move("run-1", 0.3)
    assert inner.code == Code.CHANGED and answer["ok"], answer
    assert "duplicate" not in answer, answer
    assert downs(board) == [0.3]

    power_cycle(board, master)
    # the master's retry of the same execution: the board knows it ran it, and says so
    inner, again = master_copy.move("run-1", 0.3)
    assert inner.code == Code.CHANGED and again["ok"] and again["duplicate"] is True, again
    assert again["result"] == answer["result"], (answer, again)
    assert downs(board) == [0.3], board.pin_history()

    # cut while the blind moves: the retry is refused and names why; nothing moves again
    master_copy.send_only("run-2", 10.0)
    wait_until(lambda: board.pin_level(DOWN_PIN) == 1, timeout=10, what="the long move under way")
    power_cycle(board, master)
    inner, refused = master_copy.move("run-2", 10.0)
    assert inner.code == Code.PRECONDITION_FAILED and not refused["ok"] and refused["field"] == "eid", refused
    assert "interrupted" in refused["error"], refused
    moves = downs(board)
    assert len(moves) == 2 and moves[0] == 0.3 and moves[1] < 10.0, board.pin_history()
    # and a new execution still runs
    inner, answer = master_copy.move("run-3", 0.3)
    assert inner.code == Code.CHANGED and answer["ok"] and "duplicate" not in answer, answer
    assert downs(board)[2:] == [0.3], board.pin_history()
