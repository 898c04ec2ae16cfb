"""One run per device at a time, across masters: a PostgreSQL advisory lock per device (DESIGN.md decision 11).

`DeviceLocks` holds them on one connection of its own (session locks: a master that dies, even by kill -9, lets
go of them with its connection). In front of each, an asyncio lock per device orders this master's own runs
(advisory locks are re-entrant within a session, so they cannot order runs of the same master). `LocalLocks` is
the same interface without a database (the runner's default, for tests that run it in-process).

Layer: service. The runner (jobs/runner.py) takes a device's lock for a run and lets go of it when the run ends.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger(__name__)

_CLASS = 0x70660001  # the advisory lock space of device runs (the two-int form: this, hashtext(device id))
_POLL_S = (0.02, 0.5)  # waiting for a device another master runs: first and longest pause between tries


class LocalLocks:
    """Per-device locks of this process only."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks.setdefault(device_id, asyncio.Lock())

    def locked(self, device_id: str) -> bool:
        return self._lock(device_id).locked()

    async def acquire(self, device_id: str, wait: bool = True) -> bool:
        lock = self._lock(device_id)
        if not wait and lock.locked():
            return False
        await lock.acquire()
        try:
            if await self._shared(device_id, wait):
                return True
        except BaseException:  # cancelled while it waited for another master: this master's lock goes too
            lock.release()
            raise
        lock.release()
        return False

    async def acquire_free(self, device_ids: list[str]) -> set[str]:
        """Take the locks of those devices that are free now, without waiting (a role's run: together)."""
        free = [d for d in dict.fromkeys(device_ids) if not self._lock(d).locked()]
        for device_id in free:
            await self._lock(device_id).acquire()  # free: at once, nothing slips in between
        taken: set[str] = set()
        try:
            taken = await self._shared_many(free)
        finally:
            for device_id in free:
                if device_id not in taken:
                    self._lock(device_id).release()
        return taken

    async def release(self, device_id: str) -> None:
        try:
            await self._unshare(device_id)
        finally:
            self._lock(device_id).release()

    # the database's part: nothing here
    async def _shared(self, device_id: str, wait: bool) -> bool:
        return True

    async def _shared_many(self, device_ids: list[str]) -> set[str]:
        return set(device_ids)

    async def _unshare(self, device_id: str) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class DeviceLocks(LocalLocks):
    """Per-device locks shared by every master on the database."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._io = asyncio.Lock()  # one query at a time on the connection

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.url)

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            # the locks held on the lost connection are gone with it; runs in progress go on
            log.warning("device locks: the database connection was lost; connecting again")
            self._conn = await asyncpg.connect(self.url)
        return self._conn

    async def _try(self, device_ids: list[str]) -> set[str]:
        async with self._io:
            conn = await self._connection()
            rows = await conn.fetch(
                "select d, pg_try_advisory_lock($1, hashtext(d)) as taken from unnest($2::text[]) d",
                _CLASS,
                device_ids,
            )
        return {r["d"] for r in rows if r["taken"]}

    async def _shared(self, device_id: str, wait: bool) -> bool:
        pause = _POLL_S[0]
        while True:
            if await self._try([device_id]):
                return True
            if not wait:
                return False
            log.debug("device %s: another master runs it; waiting", device_id)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_S[1])

    async def _shared_many(self, device_ids: list[str]) -> set[str]:
        return await self._try(device_ids) if device_ids else set()

    async def _unshare(self, device_id: str) -> None:
        try:
            async with self._io:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.execute("select pg_advisory_unlock($1, hashtext($2))", _CLASS, device_id)
        except (OSError, asyncpg.PostgresError):
            log.warning("device %s: its lock could not be released (the connection is gone with it)", device_id)
