"""Pairing: a board's identity (one naming scheme, one secret maker), which boards the master can talk OSCORE
with, and taking that away (revoke).

Layer: service (no litestar, no aiocoap). A board gets its identity by flashing or adoption, both through
`device_id_for` and `new_secret` here: the device id is `esp-` and the 12 hex digits of its MAC (a virtual
board's MAC too); boards paired before this scheme keep the ids they have (`esp32-<last 3 MAC bytes>` from
flashing), because flashing keeps the id of the device known by a MAC. This service then hands a board's keys
to the gateway (a BoardKeys), at start for every paired board, and forgets them on revoke.
"""

from __future__ import annotations

import logging
import secrets

import asyncpg

from ..events import EventHub
from ..storage import devices as q
from .link import BoardKeys

log = logging.getLogger(__name__)

SECRET_BYTES = 32  # the per-device secret OSCORE keys are derived from (docs/security.md)


def device_id_for(mac: str, *, fresh: bool = False) -> str:
    """The device id of the board with this MAC (aa:bb:cc:dd:ee:ff or its hex digits): esp-aabbccddeeff.

    fresh: a new identity for the same board (a factory reset), with a random suffix: esp-aabbccddeeff-1f2e."""
    base = "esp-" + mac.replace(":", "").replace("-", "").lower()
    return f"{base}-{secrets.token_hex(2)}" if fresh else base


def new_secret() -> bytes:
    """A fresh per-device secret: every pairing gets one (a re-flash too: its OSCORE sequence numbers restart)."""
    return secrets.token_bytes(SECRET_BYTES)


class PairingService:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub, keys: BoardKeys) -> None:
        self.pool = pool
        self.hub = hub
        self.keys = keys

    async def restore(self) -> None:
        """At start: the gateway learns the keys of every paired board."""
        for row in await q.paired_boards(self.pool):
            self.keys.pair(row["id"], row["oscore_id"], row["secret"], row["address"], row["port"])

    async def paired(self, device_id: str) -> None:
        """A board got an identity (flashing, adoption): the gateway learns its OSCORE keys."""
        row = await q.paired_board(self.pool, device_id)
        if row is not None:
            self.keys.pair(row["id"], row["oscore_id"], row["secret"], row["address"], row["port"])

    async def revoke(self, device_id: str) -> bool:
        """A board can no longer speak for itself, at once: its keys and registration are forgotten. Flashing or
        adopting it again gives it a fresh secret."""
        found = await q.revoke(self.pool, device_id)
        self.keys.unpair(device_id)
        if found:
            log.warning("board %s revoked", device_id)
            self.hub.publish("devices")
        return found
