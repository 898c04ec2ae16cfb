"""Bringing boards to what their role says.

Layer: service. What a board should run is its role's modules, in their newest versions, with the role's
configuration plus the board's own (`devices.role_config`). A sync:
1. asks the board which module files it has (GET /m);
2. pushes the missing ones, each built for the board's .mpy ABI (PUT /m/STEM, block-wise);
3. switches the board over (PUT /role).
The board swaps atomically and goes back to what it ran if the new role cannot run (docs/modules.md); if the new
version did not fit its heap, it restarts into it and its next registration settles the sync.
The sync state (pending, updating, in_sync, failed with the reason) is kept per board and shown everywhere.
A board that is offline stays `pending` and is synced when it registers.

Rolling a new module version out across the fleet is modules/rollouts.py. It never imports aiocoap: the board
link (gateway) does the talking.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from ..devices.link import BoardLink
from ..errors import BoardError, BoardTimeoutError, BoardUnreachableError, InvalidError
from ..events import EventHub
from ..metrics import Metrics
from ..model import DeviceRead, ModuleRead, RoleRead
from ..runtime import Background
from ..storage import devices as dq
from ..storage import roles as rq
from .builds import ModuleService, mpy_abi, mpy_arch

log = logging.getLogger(__name__)


class Desired:
    """What a board should run: {capability: configuration} and {capability: module version}."""

    def __init__(self, role: RoleRead, caps: dict[str, dict[str, Any]], modules: dict[str, ModuleRead]) -> None:
        self.role = role
        self.caps = caps
        self.modules = modules

    def body(self) -> dict[str, Any]:
        """PUT /role's payload (docs/protocol.md)."""
        return {
            "role": self.role.name,
            "caps": self.caps,
            "modules": {cap: module.stem for cap, module in self.modules.items()},
        }


class Syncer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        hub: EventHub,
        link: BoardLink,
        modules: ModuleService,
        metrics: Metrics | None = None,
        locks=None,
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.link = link
        self.modules = modules
        self.metrics = metrics or Metrics()
        # the runner's device locks (sites/locks.py): a role switch waits for a run on the board to end
        self.locks = locks
        self._locks: dict[str, asyncio.Lock] = {}
        self._changes: dict[str, asyncio.Event] = {}  # device id -> set when its sync state is next written here
        # called with (device id, the switch's answer: its /cap) as soon as a board answered a switch in place: the
        # registry then knows the links update that follows (devices/registry.py's relink)
        self.on_switched: Callable[[str, dict[str, Any]], None] | None = None
        self._background = Background(log, "sync task")

    async def desired(self, device: DeviceRead) -> Desired | None:
        """None when the board has no role defined as data (nothing to sync)."""
        role = await rq.get_role(self.pool, device.role) if device.role else None
        if role is None or not role.defined:
            return None
        caps = {cap: {**cfg, **device.role_config.get(cap, {})} for cap, cfg in role.modules.items()}
        versions = await self.modules.ensure(list(caps))
        return Desired(role, caps, versions)

    def changed(self, device_id: str) -> asyncio.Event:
        """Set the next time this master writes the board's sync state (a rollout waits on it for a board that
        restarted into its new version, rather than reading the database again and again)."""
        return self._changes.setdefault(device_id, asyncio.Event())

    @staticmethod
    def syncable(device: DeviceRead) -> bool:
        """Boards running MicroPython; a process target's modules are the host's files (docs/jobs.md)."""
        return bool(device.mpy)

    # -- one board -----------------------------------------------------------------------------------

    async def sync(self, device_id: str) -> str | None:
        """Bring one board in line with its role; returns the sync state (None: nothing to sync)."""
        lock = self._locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            device = await dq.get_by_id(self.pool, device_id)
            if device is None or not self.syncable(device):
                return None
            try:
                want = await self.desired(device)
            except InvalidError as exc:
                return await self._state(device, "failed", str(exc))
            if want is None:
                return None
            if not device.online or device.address is None or device.port is None:
                return await self._state(device, "pending", "offline: syncs when it registers")
            await self._state(device, "updating", f"to role {want.role.name}")
            try:
                answer = await self._push(device, want)
            except (BoardUnreachableError, BoardTimeoutError) as exc:
                return await self._state(device, "pending", f"{exc}: syncs when it registers")
            except (BoardError, InvalidError) as exc:
                return await self._state(device, "failed", str(exc))
            if answer.get("restart"):
                # the new version did not fit the board's (fragmented) heap: it restarts to load it on a fresh one,
                # and its registration says whether it runs it (registered(): in_sync, or failed when it went back)
                reason = f"restarting to load it on a fresh heap ({answer.get('reason', '')})"
                return await self._state(device, "updating", reason, applied=want.body())
            await dq.replace_capabilities(self.pool, device.id, answer.get("caps", []))
            return await self._state(device, "in_sync", "", applied=want.body())

    async def _push(self, device: DeviceRead, want: Desired) -> dict[str, Any]:
        try:
            return await self._push_once(device, want, listed=False)
        except BoardError as exc:
            if not (exc.field or "").startswith("modules."):
                raise
            # a module we did not push is not there after all (its files were lost), or one we pushed is gone: the
            # board restarted between the push and the switch, and its boot tidied away the file no config named
            # yet. Ask the board what it has, push the rest again, once.
            log.info("sync of %s: %s; pushing again", device.name, exc.detail)
            return await self._push_once(device, want, listed=True)

    async def _push_once(self, device: DeviceRead, want: Desired, listed: bool) -> dict[str, Any]:
        """Push what the board lacks, then switch. Without `listed`, what it lacks is known without asking it: the
        modules it said it runs (its /cap at registration, or the answer to its last switch) are on its flash; a
        rollout's new version never is. `listed`: GET /m first (the board's own list of its files)."""
        assert device.address is not None and device.port is not None and device.mpy
        abi = mpy_abi(device.mpy)
        if listed:
            present = set((await self.link.modules(device.address, device.port)).get("modules", {}))
        else:
            present = {c.module for c in device.capabilities if c.module}
        for cap, module in want.modules.items():
            if module.stem in present:
                continue
            arch = ""
            if module.declared.get("native"):  # machine code: built for the board's own architecture
                arch = mpy_arch(device.mpy)
                if not arch:
                    raise InvalidError(
                        f"{module.stem} holds native code, and {device.name} reports no native architecture",
                        field=f"modules.{cap}",
                    )
            data = await self.modules.build(module.id, abi, arch)
            log.info(
                "pushing %s (%d bytes, ABI %s) to %s",
                module.stem,
                len(data),
                abi,
                device.name,
                extra={"device": device.id},
            )
            sha = hashlib.sha256(data).hexdigest()
            try:
                await self.link.put_module(device.address, device.port, module.stem, sha, data)
            except Exception:
                self.metrics.module_pushes.labels("failed").inc()
                raise
            self.metrics.module_pushes.labels("succeeded").inc()
        return await self._switch(device, want.body())

    async def _switch(self, device: DeviceRead, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /role while no run is on the board: the switch stops the capability the run drives (a blind's
        motor mid-move; found by tools/bench/chaos.py), so it takes the device's run lock like a run does."""
        assert device.address is not None and device.port is not None
        if self.locks is None:
            return self._switched(device, await self.link.put_role(device.address, device.port, body))
        await self.locks.acquire(device.id)
        try:
            return self._switched(device, await self.link.put_role(device.address, device.port, body))
        finally:
            await self.locks.release(device.id)

    def _switched(self, device: DeviceRead, answer: dict[str, Any]) -> dict[str, Any]:
        """Said at once (before anything else is awaited): the board's links update follows its answer closely."""
        if self.on_switched is not None and not answer.get("restart"):
            self.on_switched(device.id, answer)
        return answer

    async def _state(self, device: DeviceRead, state: str, reason: str, applied: dict | None = None) -> str:
        await rq.set_sync(self.pool, device.id, state, reason, applied)
        changed = self._changes.pop(device.id, None)
        if changed is not None:
            changed.set()
        if state == "failed":
            log.warning("sync of %s failed: %s", device.name, reason)
        else:
            log.info("sync of %s: %s %s", device.name, state, reason)
        self.hub.publish("devices")
        return state

    def request(self, device_ids: list[str]) -> None:
        """Sync these boards in the background (a role changed or was assigned)."""
        for device_id in device_ids:
            self._background.spawn(self.sync(device_id))

    async def registered(self, device_id: str, described: dict[str, Any]) -> None:
        """A board registered and told what it runs: sync it if that is not what its role says."""
        lock = self._locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            pass  # a sync in progress (to a board that just restarted, maybe) ends first
        device = await dq.get_by_id(self.pool, device_id)
        if device is None or not self.syncable(device):
            return
        if device.safe_mode:
            return  # its boots failed with what it has: pushing that again would repeat them; a person pushes a fix
        known = await rq.sync_state(self.pool, device_id)
        if known is not None and known[0] == "failed":
            return  # the board refused what its role says: a person looks at that first
        try:
            want = await self.desired(device)
        except InvalidError as exc:
            await self._state(device, "failed", str(exc))
            return
        if want is None:
            return
        running = {c.get("name"): c.get("module") for c in described.get("caps", [])}
        went_back = [f for f in described.get("failed", []) if isinstance(f, dict) and f.get("name") in running]
        if went_back:
            # a version that ran after its push could not start at this boot, and the board went back to the
            # one before: pushing it again would only repeat that at the next boot; a person looks first
            reason = "; ".join(f"{f['name']}: {f.get('error', '')}" for f in went_back)
            await self._state(device, "failed", reason)
            return
        stems = {cap: module.stem for cap, module in want.modules.items()}
        same_config = known is not None and known[1] is not None and known[1].get("caps") == want.caps
        in_line = running == stems and described.get("role") == want.role.name and not described.get("failed")
        if in_line and (same_config or known is None):
            # never synced (fresh from flashing, which wrote this role's configuration) or synced already
            if known is None or known[0] != "in_sync":
                await self._state(device, "in_sync", "", applied=want.body() if known is None else None)
            return
        await self.sync(device_id)

    async def stop(self) -> None:
        await self._background.stop()
