"""Pairing: which boards the master can talk OSCORE with, and taking that away (revoke).

Layer: service (no litestar, no aiocoap). A board gets its identity by flashing or adoption (named and given
its secret by devices/identity.py, the one scheme); this service then hands its keys to the gateway (a
BoardKeys), at start for every paired board, and forgets them on revoke.
"""

from __future__ import annotations

import logging

import asyncpg

from ..events import EventHub
from ..storage import devices as q
from .link import BoardKeys

log = logging.getLogger(__name__)


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
