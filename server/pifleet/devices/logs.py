"""The boards' logs: what a board prints (its agent, its role modules' print, tracebacks) as it sends it in batches
over CoAP (POST /l, gateway/logs.py; docs/protocol.md "Logs from the boards"), kept for reading and following.

Layer: service. It takes a batch's bytes as they came (the gateway checked who sent them), splits them into lines
(malformed UTF-8 is replaced, never refused), keeps the last KEEP lines per board in PostgreSQL, counts them, and
publishes each batch on the event hub as a `logs` notice about the board, for pages and `pifleet logs -f`.
It never imports litestar or aiocoap.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
import msgspec

from ..errors import InvalidError, NotFoundError
from ..events import EventHub
from ..metrics import Metrics
from ..storage import logs as q

log = logging.getLogger(__name__)

KEEP = 10_000  # lines per board
DEFAULT_LIMIT = 200
MAX_BATCH = 1024  # bytes: a board sends at most 900 at a time (one datagram, protected)


class LogLine(msgspec.Struct):
    """One line a board printed, without its newline: its number in the board's order and when it arrived."""

    seq: int
    time: datetime
    line: str


def lost_line(lost: int) -> str:
    return f"… {lost} bytes of this board's log were lost (its buffer was full)"


def split(payload: bytes) -> list[str]:
    """A batch's lines: whole lines end in "\\n" (a trailing "\\r" goes too); text after the last one is a line
    cut by the board's batch size, kept as it came. Malformed UTF-8 becomes U+FFFD, and so does NUL, which
    PostgreSQL text cannot hold."""
    text = payload.decode("utf-8", "replace").replace("\x00", "\ufffd")
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def parse_since(value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    since = None
    # "…T14:00:00 01:00": a "+" of an offset that reached us unescaped in a query string is a space
    # and a leap second (RFC 3339 allows :60) is the second before it
    for text in (value, "+".join(value.rsplit(" ", 1)), value.replace(":60", ":59", 1)):
        try:
            since = datetime.fromisoformat(text)
            break
        except ValueError:
            continue
    if since is None:
        raise InvalidError(f"not an ISO 8601 time: {value[:40]!r}", field="since")
    try:  # a time without offset is the master's local time
        return (since if since.tzinfo else since.astimezone()).astimezone(UTC)
    except (OverflowError, ValueError):  # within a day of year 1 or 9999: before every line, or after every line
        return datetime.min.replace(tzinfo=UTC) if since.year == 1 else datetime.max.replace(tzinfo=UTC)


def parse_limit(value: str | int | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise InvalidError(f"not an integer: {str(value)[:40]!r}", field="limit") from None
    if not 1 <= limit <= KEEP:
        raise InvalidError(f"must be 1..{KEEP}", field="limit")
    return limit


class BoardLogs:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub, metrics: Metrics) -> None:
        self.pool = pool
        self.hub = hub
        self.metrics = metrics

    async def receive(self, device_id: str, address: str, payload: bytes, lost: int = 0) -> str | None:
        """Store a batch the board `device_id` sent from `address`; None, or why it was refused: "unknown board …"
        (none by that id, or not registered now), or registered from another address (the rules of telemetry)."""
        sender = await q.sender(self.pool, device_id)
        if sender is None:
            return f"unknown board {device_id!r}"
        if not sender.registered:
            return f"unknown board {device_id!r}: not registered (POST /rd first)"
        if sender.address != address:
            return f"board {device_id} is registered from {sender.address}, not {address}"
        lines = split(payload)
        if lost > 0:  # the ring buffer dropped its oldest bytes: before this batch's lines
            lines.insert(0, lost_line(lost))
        if not lines:
            return None
        stored = await q.append(self.pool, device_id, lines, KEEP)
        self.metrics.board_log_lines.inc(len(stored))
        batch = {"device": sender.name, "lines": [LogLine(s.seq, s.at, s.line) for s in stored]}
        self.hub.publish("logs", msgspec.json.encode(batch).decode(), about=device_id)
        return None

    async def lines(self, name: str, since: str | None = None, limit: str | int | None = None) -> list[LogLine]:
        """The board's newest `limit` lines (default 200, at most KEEP) received at or after `since` (ISO 8601),
        oldest first. NotFoundError for an unknown board, InvalidError naming `since` or `limit`."""
        when, count = parse_since(since), parse_limit(limit)
        device_id = await self._device_id(name)
        return [LogLine(s.seq, s.at, s.line) for s in await q.newest(self.pool, device_id, when, count)]

    async def _device_id(self, name: str) -> str:
        device_id = await q.device_id(self.pool, name)
        if device_id is None:
            raise NotFoundError(f"no device named {name!r}", field="name")
        return device_id
