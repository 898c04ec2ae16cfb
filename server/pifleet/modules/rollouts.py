"""Rolling a new module version out across the fleet, and the one way an upload leads to a rollout.

Layer: service. A rollout syncs one board first (modules/sync.py). The rest follow only when that one is in
sync and healthy (its links update after the switch came, else it answers /stats): a few at once, and one more
for every board that comes through healthy (so the number at once doubles with each round, as TCP's slow start
does, up to _PARALLEL). The boards are separate machines and a push is mostly waiting for one board's answers, so
many at once is what makes a big rollout quick; growing from a few keeps a bad version on few boards. The first
failure halts the rollout: boards not started keep their version.
An upload of a new version (API or dashboard: `upload()`) starts a rollout to the boards whose role uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from ..devices.link import BoardLink
from ..errors import BoardError, NotFoundError
from ..events import EventHub
from ..model import ModuleRead, ModuleUpload, RolloutRead
from ..runtime import Background
from ..storage import devices as dq
from ..storage import roles as rq
from .builds import ModuleService
from .sync import Syncer

log = logging.getLogger(__name__)

_FIRST = 8  # boards synced at once right after the first one (as many as before this grew)
_RESTART_S = 60  # a board that restarts into a new version: until its registration settles the sync
_RECHECK_S = 0.5  # ... read again this often too (its registration may reach another site's master)
_PARALLEL = 64  # at most, once as many have come through healthy
_RELINK_S = 2.0  # a board switched in place: how long its links update may take before /stats is asked instead


class RolloutService:
    def __init__(
        self, pool: asyncpg.Pool, hub: EventHub, link: BoardLink, modules: ModuleService, syncer: Syncer
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.link = link
        self.modules = modules
        self.syncer = syncer
        # master.py: the registry's relinked(device id, since, timeout): a board's links update after its switch
        self.relinked: Callable[[str, float, float], Awaitable[bool]] | None = None
        self._background = Background(log, "rollout task")

    async def upload(self, upload: ModuleUpload) -> tuple[ModuleRead, bool]:
        """Store an uploaded module (checked by mpy-cross); a new version goes to the boards whose role uses the
        module, one first, then the rest (`module.rollout` names the rollout, None when no board uses it)."""
        module, new = await self.modules.upload(upload)
        if new:
            module.rollout = await self.start(module)
        return module, new

    async def list(self, limit: int = 50) -> list[RolloutRead]:
        return await rq.list_rollouts(self.pool, limit)

    async def get(self, rollout_id: int) -> RolloutRead:
        rollout = await rq.get_rollout(self.pool, rollout_id)
        if rollout is None:
            raise NotFoundError(f"no rollout {rollout_id}", field="rollout_id")
        return rollout

    async def start(self, module: ModuleRead) -> int | None:
        """Roll a new version out to the boards whose role uses the module; None when there are none."""
        roles = await rq.roles_using(self.pool, module.name)
        devices = [await dq.get_by_id(self.pool, d) for d in await rq.device_ids_with_role(self.pool, roles)]
        devices = [d for d in devices if d is not None and self.syncer.syncable(d)]
        if not devices:
            return None
        devices.sort(key=lambda d: (not d.online, d.name))  # an online board goes first
        rollout_id = await rq.create_rollout(self.pool, module.id, [d.id for d in devices])
        log.info("rollout %d of %s to %d boards", rollout_id, module.stem, len(devices))
        self._background.spawn(self._roll(rollout_id, [d.id for d in devices]))
        self.hub.publish("rollouts")
        return rollout_id

    async def _roll(self, rollout_id: int, device_ids: list[str]) -> None:
        pending = list(device_ids)
        # phase 1: boards one at a time until one is in sync and healthy (offline ones are skipped)
        while pending:
            device_id = pending.pop(0)
            outcome = await self._roll_one(rollout_id, device_id)
            if outcome == "failed":
                return
            if outcome == "done":
                break
        # phase 2: the rest, a few at a time, one more for each that comes through healthy; a failure stops boards
        # not yet started
        halted = asyncio.Event()
        slots = asyncio.Semaphore(_FIRST)
        allowed = _FIRST

        async def one(device_id: str) -> None:
            nonlocal allowed
            async with slots:
                if halted.is_set():
                    return
                if await self._roll_one(rollout_id, device_id) == "failed":
                    halted.set()
                    return
            if allowed < _PARALLEL:  # did not fail: one more at once
                allowed += 1
                slots.release()

        await asyncio.gather(*(one(d) for d in pending))
        if not halted.is_set():
            await rq.finish_rollout(self.pool, rollout_id, "succeeded")
            log.info("rollout %d finished", rollout_id)
        self.hub.publish("rollouts")

    async def _roll_one(self, rollout_id: int, device_id: str) -> str:
        """done, skipped (offline) or failed (and the rollout halted)."""
        try:
            before = await dq.get_by_id(self.pool, device_id)
            syncing = asyncio.get_running_loop().time()  # its links update after the switch comes after this
            state = await self.syncer.sync(device_id)
            device = before  # switched in place: where it was
            in_place = state == "in_sync"
            # it restarts to load the new version, or the push met it restarting (a board whose heap had no room
            # for the next datagram restarts, agent/modules.py and agent/port.py): its registration settles the sync
            if state == "updating" or (state == "pending" and before is not None and before.online):
                state = await self._settled(device_id)
                device = await dq.get_by_id(self.pool, device_id)  # where it registered from
            if state == "in_sync":
                assert device is not None and device.address is not None and device.port is not None
                if not (in_place and await self._relinked(rollout_id, device_id, syncing)):
                    await self.link.stats(device.address, device.port)  # healthy: it answers after the swap
                await rq.rollout_progress(self.pool, rollout_id, done=device_id)
                return "done"
            if state in ("pending", None):
                await rq.rollout_progress(self.pool, rollout_id, skipped=device_id)
                return "skipped"
            device = await dq.get_by_id(self.pool, device_id)
            reason = device.sync.reason if device is not None and device.sync is not None else "sync failed"
        except (BoardError, asyncpg.PostgresError, OSError) as exc:
            reason = f"not healthy after the update: {exc}"
        await rq.finish_rollout(self.pool, rollout_id, "halted", device_id, reason)
        log.warning("rollout %d halted at %s: %s", rollout_id, device_id, reason)
        self.hub.publish("rollouts")
        return "failed"

    async def _relinked(self, rollout_id: int, device_id: str, since: float) -> bool:
        """Whether a board switched in place updated its registration with its new links (RFC 9176 §5.3) within
        _RELINK_S: its agent sent that from its loop on the new role, which is as healthy as an answer to GET
        /stats says, without the request (on the board: a module loaded and two collections). False when it did
        not come in time, or comes to another site's master: then /stats is asked."""
        if self.relinked is None or not await self.relinked(device_id, since, _RELINK_S):
            return False
        log.info("rollout %d: %s healthy: its links update came after the switch", rollout_id, device_id)
        return True

    async def _settled(self, device_id: str) -> str:
        """The sync state of a board that restarted, once its registration has settled it (in_sync, or failed when
        it went back to the version before). After _RESTART_S without it: failed when it restarted into the new
        version; pending (skipped: it syncs when it registers) when the push met it restarting or gone.
        Woken by this master's registration of the board as soon as that wrote its state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RESTART_S
        known = None
        while loop.time() < deadline:
            changed = self.syncer.changed(device_id)  # before the read: a write between the two still wakes us
            known = await rq.sync_state(self.pool, device_id)
            if known is not None and known[0] not in ("updating", "pending"):
                return known[0]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(0.0, min(_RECHECK_S, deadline - loop.time())))
        if known is not None and known[0] == "pending":
            return "pending"
        await rq.set_sync(self.pool, device_id, "failed", f"did not come back within {_RESTART_S} s of its restart")
        return "failed"

    async def stop(self) -> None:
        await self._background.stop()
