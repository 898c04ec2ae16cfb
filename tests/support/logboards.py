"""A stand-in board that sends its log the way the agent does (POST /l?ep=ID[&lost=N], text, OSCORE-protected),
paired the way real boards are: adopted (announced on /pair, confirmed by a person through the API with the code
its console shows), then registered over OSCORE. Its keys come out of the sealed identity the master hands it,
so the test can protect requests with aiocoap's own OSCORE classes (tests/support/oscore.py) and read the
protected answers; raw UDP, so nothing in between retries or hides anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from itertools import count

import aiocoap
from aiocoap.numbers.codes import Code
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pifleet.devices.adoption import proof_of, stretch
from tests.support.oscore import Peer

_MIDS = count(0x2000)


def exchange(address: tuple[str, int], msg: aiocoap.Message) -> aiocoap.Message:
    """One confirmable request as a datagram from a fresh socket, its (piggy-backed) answer back."""
    mid = next(_MIDS) & 0xFFFF
    msg.mtype, msg.mid, msg.token = aiocoap.CON, mid, mid.to_bytes(2, "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(msg.encode(), address)
        while True:
            answer = aiocoap.Message.decode(sock.recvfrom(2048)[0])
            if answer.token == msg.token:
                return answer


def request(path: str, query: tuple[str, ...] = (), payload: bytes = b"", **kw) -> aiocoap.Message:
    msg = aiocoap.Message(code=Code.POST, payload=payload, **kw)
    msg.opt.uri_path, msg.opt.uri_query = tuple(path.split("/")), query
    return msg


def _open(k: bytes, sealed: dict) -> dict:
    """What agent/adopt.py does with the sealed identity: check the tag, decrypt, unpad."""
    iv, box = bytes.fromhex(sealed["iv"]), bytes.fromhex(sealed["box"])
    tag = hmac.new(hashlib.sha256(b"mac" + k).digest(), iv + box, hashlib.sha256).digest()
    assert hmac.compare_digest(tag, bytes.fromhex(sealed["tag"]))
    decryptor = Cipher(algorithms.AES(hashlib.sha256(b"enc" + k).digest()[:16]), modes.CBC(iv)).decryptor()
    plain = decryptor.update(box) + decryptor.finalize()
    return json.loads(plain[: -plain[-1]])


class LogBoard:
    def __init__(self, master, name: str, mac: str, code: str = "F0GS2345") -> None:
        self.master, self.name = master, name
        nonce = hashlib.sha256(mac.encode()).digest()[:16]
        k = stretch(code, nonce)
        announcement = json.dumps(
            {"mac": mac, "chip": "ESP32", "fw": "1.24.1", "mpy": 6, "nonce": nonce.hex(), "proof": proof_of(k).hex()}
        ).encode()
        assert exchange(master.coap, request("pair", payload=announcement, content_format=50)).code == Code.CHANGED
        adoption = next(a for a in master.get("/api/adoptions") if a["mac"] == mac)
        r = master.post(f"/api/adoptions/{adoption['id']}/confirm", json={"code": code, "name": name})
        assert r.status_code == 200, r.text
        answer = exchange(master.coap, request("pair", payload=announcement, content_format=50))
        identity = _open(k, json.loads(answer.payload))
        self.device_id = identity["device_id"]
        self.peer = Peer(bytes.fromhex(identity["secret"]), bytes.fromhex(identity["oscore_id"]))

    def protected(self, msg: aiocoap.Message) -> aiocoap.Message:
        """The request protected with the board's context; the master's answer as the board reads it."""
        outer, request_id = self.peer.protect(msg)
        answer = exchange(self.master.coap, outer)
        inner, _ = self.peer.unprotect(answer, request_id)
        return inner

    def register(self) -> None:
        """POST /rd from 127.0.0.1. The socket closes at once, so the master's capability read that follows fails
        fast (ICMP port unreachable): this board only logs."""
        reg = request("rd", ("ep=" + self.device_id, "lt=3600", "mpy=6", "name=" + self.name), b"", content_format=40)
        assert (answer := self.protected(reg)).code == Code.CREATED, answer

    def log(self, text: str | bytes, lost: int | None = None, content_format: int = 0) -> aiocoap.Message:
        """One batch, as the agent sends it; the master's (inner) answer."""
        query = ("ep=" + self.device_id,) + ((f"lost={lost}",) if lost is not None else ())
        payload = text.encode() if isinstance(text, str) else text
        return self.protected(request("l", query, payload, content_format=content_format))
