"""Writes that arrive one by one, stored together: a small bounded buffer flushed as one statement.

Layer: storage (asyncio only; the write function does the SQL). What boards send by themselves — telemetry and
registration updates — comes in as many small requests; one statement and one commit each made the database's
commit (an fsync) the price of every request. A Batcher gathers them: the first item waits at most `linger`
seconds for company (or until `size` items are there), then the batch goes to `write` in one call; items that
arrive while a batch is written form the next one, written as soon as that one is done (group commit). At most
one batch of a Batcher is being written at a time, so its writes never take rows in two orders at once.

Each `submit` returns that item's own result once its batch is committed: a board's 2.04 still means "stored".
Nothing is lost: an item stays in the buffer even when its submitter stops waiting (a request cancelled at
shutdown), and `close()` writes what is buffered before the pool closes; after it, `submit` writes at once. The
buffer is bounded (`bound` items): beyond it submitters wait for room, so a database that falls behind slows the
requests down instead of growing the master's memory. `write` must be atomic (one statement, or one transaction):
when a batch fails, nothing of it is stored and its items are written again one by one, so one bad item fails only
its own request (with the error its write raised), as before batching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        size: int = 256,
        linger: float = 0.002,
        bound: int = 2048,
        name: str = "batch",
    ) -> None:
        self._write = write
        self.size, self.linger, self.bound, self.name = size, linger, max(bound, size), name
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._full = asyncio.Event()  # `size` items are waiting: no need to linger
        self._room = asyncio.Event()  # the buffer is below its bound again
        self._room.set()
        self._flusher: asyncio.Task | None = None
        self._closed = False
        self.batches = 0  # written so far, and the items in them (the bench and the tests read these)
        self.written = 0

    async def submit(self, item: T) -> R:
        """Buffer the item; its result once the batch that holds it is written."""
        if self._closed:
            (result,) = await self._write([item])
            return result
        while len(self._items) >= self.bound:
            self._room.clear()
            await self._room.wait()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        if len(self._items) >= self.size:
            self._full.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"{self.name}-flush")
        return await future

    async def close(self) -> None:
        """Write everything buffered; later items are written one by one, at once."""
        self._closed = True
        self._full.set()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        first = True  # only a batch that starts from idle lingers; the next ones go as soon as the last is written
        try:
            while self._items:
                if first and not self._closed and len(self._items) < self.size and self.linger > 0:
                    try:
                        await asyncio.wait_for(self._full.wait(), self.linger)
                    except TimeoutError:
                        pass
                batch, self._items = self._items[: self.size], self._items[self.size :]
                if len(self._items) < self.size:
                    self._full.clear()
                if len(self._items) < self.bound:
                    self._room.set()
                first = False
                await self._write_batch(batch)
        finally:
            self._flusher = None

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 — the submitters answer for it; the next batch is tried anew
            if len(batch) > 1:
                # one bad item must not fail the others: the write is atomic, so nothing of the batch is stored;
                # each item is written again on its own and only what fails alone fails
                log.info("%s: a batch of %d failed (%s); writing its items one by one", self.name, len(batch), exc)
                for one in batch:
                    await self._write_batch([one])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.written += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its submitter stopped waiting: the item is stored all the same
                future.set_result(result)
