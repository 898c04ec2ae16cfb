"""netem in user space, for kernels without sch_netem: frames carried between two interfaces by a thread that
loses, delays (with jitter), reorders and duplicates them as `tc netem` would.

Layer: sim (CPython), used by sim/netns.py only. A `Relay` reads every frame that arrives on either interface of a
pair (AF_PACKET sockets, so needs CAP_NET_RAW) and sends it out of the other one, each direction on its own, as
netem on each end's egress would (iproute2's tc-netem(8); the same line both ways):

- `loss P%`: the frame is dropped;
- `delay D [J]`: it leaves D later, give or take J (uniformly, as netem without a distribution table); frames
  leave in the order of their time to leave, so jitter reorders them, as netem's time-ordered queue does;
- `reorder P%` (with a delay): P % of the frames leave at once, ahead of those delayed;
- `duplicate P%`: a copy leaves too, with a delay of its own.

IPv4 frames are impaired; ARP and the rest pass at once (netem would delay them too: a lost ARP answer would stall
the link for a second, which is not what the loss figure is about). A UDP datagram's checksum is set to 0 ("none",
RFC 768) as it passes: the sender's veth leaves it to be completed by a device (checksum offload), and a frame
sent again from user space is not completed. What the relay did is counted in `counts`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4  # what this socket itself sent, seen again
_IPV4 = b"\x08\x00"
_UDP = 17
_MAX_FRAME = 65536


class UnsupportedImpairment(ValueError):
    """A netem word the user-space relay does not apply (it names it)."""


@dataclass(frozen=True)
class Impairment:
    """One direction's impairment, from a netem line's words (netns.parse_netem's output)."""

    loss: float = 0.0  # fractions, 0..1
    delay_s: float = 0.0
    jitter_s: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    @classmethod
    def from_args(cls, args: list[str]) -> Impairment:
        values: dict[str, float] = {}
        i = 0
        while i < len(args):
            word = args[i]
            i += 1
            given = []
            while i < len(args) and not args[i].isalpha():
                given.append(args[i])
                i += 1
            if word == "delay":
                values["delay_s"] = _seconds(given[0])
                if len(given) > 1:
                    values["jitter_s"] = _seconds(given[1])
                if len(given) > 2:
                    raise UnsupportedImpairment("netem in user space: delay takes no correlation")
            elif word in ("loss", "reorder", "duplicate"):
                if len(given) > 1:
                    raise UnsupportedImpairment(f"netem in user space: {word} takes no correlation")
                values[word] = float(given[0].rstrip("%")) / 100
            else:
                raise UnsupportedImpairment(f"netem in user space: {word!r} is not applied (only loss, delay, "
                                            "reorder, duplicate)")  # fmt: skip
        return cls(**values)

    def words(self) -> str:
        out = []
        if self.loss:
            out.append(f"loss {self.loss * 100:g}%")
        if self.delay_s:
            out.append(f"delay {self.delay_s * 1000:g}ms" + (f" {self.jitter_s * 1000:g}ms" if self.jitter_s else ""))
        if self.reorder:
            out.append(f"reorder {self.reorder * 100:g}%")
        if self.duplicate:
            out.append(f"duplicate {self.duplicate * 100:g}%")
        return " ".join(out) or "none"


def _seconds(value: str) -> float:
    for suffix, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value) * 1e-6  # tc's default unit for a time is µs


def _no_udp_checksum(frame: bytes) -> bytes:
    """The frame with its UDP checksum zeroed (IPv4: "no checksum"); any other frame as it is."""
    if len(frame) < 34 or frame[12:14] != _IPV4 or frame[23] != _UDP:
        return frame
    at = 14 + (frame[14] & 0x0F) * 4 + 6  # the UDP header's checksum field
    if len(frame) < at + 2:
        return frame
    return frame[:at] + b"\0\0" + frame[at + 2 :]


class Relay:
    """Carries frames between the interfaces of each added pair, impaired; one thread for all pairs."""

    def __init__(self, seed: int | None = None) -> None:
        self.random = random.Random(seed)
        self.counts = {"frames": 0, "lost": 0, "duplicated": 0, "reordered": 0, "passed": 0}
        self._selector = selectors.DefaultSelector()
        self._queue: list[tuple[float, int, socket.socket, bytes]] = []  # (time to leave, order, out, frame)
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pairs: dict[tuple[str, str], list[socket.socket]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="netem-relay", daemon=True)
        self._thread.start()

    def add(self, a: str, b: str, impairment: Impairment) -> None:
        """Frames arriving on interface a leave on b, and those on b leave on a, each impaired so."""
        ends = []
        for name in (a, b):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
            sock.bind((name, 0))
            sock.setblocking(False)
            ends.append(sock)
        with self._lock:
            self._selector.register(ends[0], selectors.EVENT_READ, (ends[1], impairment))
            self._selector.register(ends[1], selectors.EVENT_READ, (ends[0], impairment))
            self._pairs[(a, b)] = ends
        self._wake()

    def remove(self, a: str, b: str) -> None:
        with self._lock:
            ends = self._pairs.pop((a, b), [])
            for sock in ends:
                self._selector.unregister(sock)
                sock.close()
            self._queue = [item for item in self._queue if item[2] not in ends]
            heapq.heapify(self._queue)

    def close(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        for a, b in list(self._pairs):
            self.remove(a, b)
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                due = self._queue[0][0] if self._queue else None
            timeout = None if due is None else max(0.0, due - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    key.fileobj.recv(4096)  # a wake-up: the pairs or the queue changed
                    continue
                self._receive(key.fileobj, *key.data)
            self._send_due()

    def _receive(self, sock: socket.socket, out: socket.socket, impairment: Impairment) -> None:
        while True:
            try:
                frame, address = sock.recvfrom(_MAX_FRAME)
            except (BlockingIOError, OSError):
                return
            if address[2] == _PACKET_OUTGOING:
                continue
            self.counts["frames"] += 1
            if frame[12:14] != _IPV4:
                self._put(0.0, out, frame)
                continue
            frame = _no_udp_checksum(frame)
            if self.random.random() < impairment.loss:
                self.counts["lost"] += 1
                continue
            copies = 2 if self.random.random() < impairment.duplicate else 1
            self.counts["duplicated"] += copies - 1
            for _ in range(copies):
                self._put(self._delay(impairment), out, frame)

    def _delay(self, impairment: Impairment) -> float:
        if impairment.reorder and self.random.random() < impairment.reorder:
            self.counts["reordered"] += 1
            return 0.0  # ahead of the delayed ones
        jitter = self.random.uniform(-impairment.jitter_s, impairment.jitter_s) if impairment.jitter_s else 0.0
        return max(0.0, impairment.delay_s + jitter)

    def _put(self, delay: float, out: socket.socket, frame: bytes) -> None:
        with self._lock:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), out, frame))

    def _send_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._queue or self._queue[0][0] > now:
                    return
                _, _, out, frame = heapq.heappop(self._queue)
            try:
                out.send(frame)
                self.counts["passed"] += 1
            except OSError as exc:  # the interface went (its namespace removed): the frame is lost with it
                log.debug("netem relay: %s", exc)
