"""Raw CoAP for the fuzzers: an encoder that writes whatever it is given (options in any form, token lengths up
to 15, any code), and a client on one UDP socket that sends a datagram and collects what comes back.

Nothing here protects, retransmits or deduplicates: the point is to see the master's own answers."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

CON, NON, ACK, RST = 0, 1, 2, 3

# option numbers (RFC 7252 §12.2, RFC 7959, RFC 8613, RFC 9175)
IF_MATCH, URI_HOST, ETAG, IF_NONE_MATCH, OBSERVE, URI_PORT, LOCATION_PATH = 1, 3, 4, 5, 6, 7, 8
OSCORE, URI_PATH, CONTENT_FORMAT, MAX_AGE, URI_QUERY, ACCEPT, LOCATION_QUERY = 9, 11, 12, 14, 15, 17, 20
BLOCK2, BLOCK1, SIZE2, PROXY_URI, PROXY_SCHEME, SIZE1, ECHO, NO_RESPONSE = 23, 27, 28, 35, 39, 60, 252, 258


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode(
    mtype: int, code: int, mid: int, token: bytes = b"", options: list[tuple[int, bytes]] = (), payload: bytes = b""
) -> bytes:
    """One CoAP datagram; options are (number, value) and are sorted (stably) as the delta encoding needs."""
    out = bytearray([0x40 | (mtype & 3) << 4 | len(token) & 0x0F, code & 0xFF]) + (mid & 0xFFFF).to_bytes(2, "big")
    out += token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta, delta_ext = _ext(number - last)
        length, length_ext = _ext(len(value))
        out.append(delta << 4 | length)
        out += delta_ext + length_ext + value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def uint(value: int) -> bytes:
    """A uint option value, minimal length (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass
class Reply:
    mtype: int
    code: int
    mid: int
    token: bytes
    payload: bytes = b""
    options: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def code_text(self) -> str:
        return f"{self.code >> 5}.{self.code & 31:02d}"

    @classmethod
    def decode(cls, data: bytes) -> Reply | None:
        """What the master sent (it only sends well-formed CoAP; None would be a finding)."""
        if len(data) < 4 or data[0] >> 6 != 1:
            return None
        tkl = data[0] & 0x0F
        reply = cls((data[0] >> 4) & 3, data[1], int.from_bytes(data[2:4], "big"), data[4 : 4 + tkl])
        rest, number = data[4 + tkl :], 0
        while rest and rest[0] != 0xFF:
            delta, length, rest = rest[0] >> 4, rest[0] & 0x0F, rest[1:]
            for which in ("delta", "length"):
                v = delta if which == "delta" else length
                if v == 13:
                    v, rest = rest[0] + 13, rest[1:]
                elif v == 14:
                    v, rest = int.from_bytes(rest[:2], "big") + 269, rest[2:]
                if which == "delta":
                    delta = v
                else:
                    length = v
            number += delta
            reply.options.append((number, rest[:length]))
            rest = rest[length:]
        reply.payload = rest[1:] if rest else b""
        return reply

    def option(self, number: int) -> bytes | None:
        return next((v for n, v in self.options if n == number), None)


class Client:
    """One UDP socket talking to the master. Requests the master sends to us (it reads the capabilities of
    whatever registered from here) are answered with a Reset at once, so they fail fast instead of piling up."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.mid = 0
        self.requests_from_master = 0

    def close(self) -> None:
        self.sock.close()

    def next_mid(self) -> int:
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.address)

    def receive(self, timeout: float) -> Reply | None:
        """The next reply from the master within `timeout`; requests from the master are reset on the way."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return None
            reply = Reply.decode(data)
            assert reply is not None, f"the master sent something that is not CoAP: {data.hex()}"
            if reply.mtype in (CON, NON) and 1 <= reply.code < 32:  # a request of the master's
                self.requests_from_master += 1
                if reply.mtype == CON:
                    self.send(encode(RST, 0, reply.mid))
                continue
            return reply
        return None

    def drain(self) -> list[Reply]:
        """Whatever already arrived (no waiting)."""
        out = []
        while (reply := self.receive(0.001)) is not None:
            out.append(reply)
        return out

    def exchange(
        self, code: int, options: list[tuple[int, bytes]] = (), payload: bytes = b"", timeout: float = 10.0
    ) -> Reply | None:
        """A well-formed CON request with a fresh MID and token; its response (piggy-backed, or separate
        after an empty ACK, which is then acknowledged), a Reset, or None if nothing came."""
        mid = self.next_mid()
        token = mid.to_bytes(2, "big") + b"fz"
        self.send(encode(CON, code, mid, token, options, payload))
        return self.await_answer(mid, token, timeout)

    def await_answer(self, mid: int, token: bytes, timeout: float) -> Reply | None:
        deadline = time.monotonic() + timeout
        acked = False
        while (left := deadline - time.monotonic()) > 0:
            reply = self.receive(left)
            if reply is None:
                return None
            if reply.mtype == RST and reply.mid == mid:
                return reply
            if reply.mtype == ACK and reply.mid == mid:
                if reply.code != 0:
                    return reply
                acked = True  # the response follows separately
                continue
            if acked and reply.token == token and reply.mtype in (CON, NON):
                if reply.mtype == CON:
                    self.send(encode(ACK, 0, reply.mid))
                return reply
        return None
