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
    """Per-device locks shared by every master on the database.

    What the runs ask of the connection goes together: while one statement is out, the devices asked for meanwhile
    gather, and the next statement takes (or lets go of) all of them. A rollout to 50 boards took and released 50
    locks one round trip after another, each queued behind the others; now a few statements do it.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._asked: dict[str, dict[str, asyncio.Future]] = {"unlock": {}, "try": {}}  # the next statements' devices
        self._sender: asyncio.Task | None = None  # sends them, one statement at a time, while any are asked

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.url)

    async def stop(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            # the locks held on the lost connection are gone with it; runs in progress go on
            log.warning("device locks: the database connection was lost; connecting again")
            self._conn = await asyncpg.connect(self.url)
        return self._conn

    def _ask(self, kind: str, device_id: str) -> asyncio.Future:
        answer = asyncio.get_running_loop().create_future()
        self._asked[kind][device_id] = answer  # once per device at a time: its asyncio lock is held meanwhile
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="device locks")
        return answer

    async def _send(self) -> None:
        while any(self._asked.values()):
            for kind in ("unlock", "try"):  # what is let go of first: a try in the same round may want it
                asked, self._asked[kind] = self._asked[kind], {}
                if asked:
                    await self._one_statement(kind, asked)

    async def _one_statement(self, kind: str, asked: dict[str, asyncio.Future]) -> None:
        devices = list(asked)
        try:
            if kind == "unlock":
                if self._conn is not None and not self._conn.is_closed():  # else they went with the connection
                    await self._conn.execute(
                        "select pg_advisory_unlock($1, hashtext(d)) from unnest($2::text[]) d", _CLASS, devices
                    )
                taken = set()
            else:
                conn = await self._connection()
                rows = await conn.fetch(
                    "select d, pg_try_advisory_lock($1, hashtext(d)) as taken from unnest($2::text[]) d",
                    _CLASS,
                    devices,
                )
                taken = {r["d"] for r in rows if r["taken"]}
        except Exception as exc:  # noqa: BLE001 — each caller of a try gets it; an unlock's are told in the log
            if kind == "unlock":
                log.warning("devices %s: their locks could not be released (the connection is gone with them)", devices)
                taken = set()
            else:
                for answer in asked.values():
                    if not answer.done():
                        answer.set_exception(exc)
                return
        for device_id, answer in asked.items():
            if answer.done():  # its caller was cancelled meanwhile: a lock taken for nobody is let go of
                if device_id in taken:
                    self._asked["unlock"][device_id] = asyncio.get_running_loop().create_future()
                continue
            answer.set_result(device_id in taken)

    async def _try(self, device_ids: list[str]) -> set[str]:
        answers = [self._ask("try", d) for d in device_ids]
        taken = await asyncio.gather(*answers)
        return {d for d, yes in zip(device_ids, taken, strict=True) if yes}

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
        await self._ask("unlock", device_id)
