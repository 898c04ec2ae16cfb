"""Firmware rollouts: MicroPython itself moved over the air to another image, one board first, then in waves,
halting at the first failure (docs/flashing.md, "OTA").

Layer: service (no litestar, no aiocoap). The boards are reached through the gateway's `put_image` (PUT /ota,
block-wise under OSCORE) and `ota` (GET /ota); the board side is micropython/agent/ota.py. Per board:
pending → transferring (progress %) → rebooting → confirming → done | rolled_back (the bootloader went back to
the old image: the board says why) | failed (reason). The canary (position 0) goes alone; the rest follow WAVE
at a time; a board that does not end `done` halts the rollout and the boards after it stay `pending`, on their
old image. Boards offline at their turn stay `pending` ("offline: follows when it registers") and are moved
when they are online again (the registry marks them so), for up to a week. A rollout is a task of the master's
event loop; one a master left `running` (stopped, or killed) goes on when it starts again (`resume`): boards done
stay done, a board that was transferring gets the image again from its start, one that was rebooting or confirming
is asked how its switch ended, and the waves continue where they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any, Protocol

import asyncpg

from ..boardfs import layout
from ..errors import BoardError, ConflictError, InvalidError, NotFoundError, PifleetError
from ..events import EventHub
from ..storage import devices as devices_q
from . import storage as q
from .catalog import Catalog
from .model import FirmwareRolloutRead
from .sets import push_set

log = logging.getLogger(__name__)

WAVE = 4
OFFLINE = "offline: follows when it registers"


class OtaLink(Protocol):
    async def put_image(self, address: str, port: int, sha256: str, data: bytes, progress=None) -> dict[str, Any]: ...

    async def ota(self, address: str, port: int, timeout: float = 5) -> dict[str, Any]: ...

    def paired(self, device_id: str) -> bool: ...  # a board of this site (its keys are here)


def app_image(image: bytes, offset: int) -> bytes:
    """The app part of a merged image: from its first OTA slot's (or factory's) offset to the end of the file."""
    at = layout.TABLE_OFFSET - offset
    parts = layout.parse_partition_table(image[at : at + layout.TABLE_SIZE])
    app = layout.find_app(parts)
    if app is None:
        raise InvalidError("the image's partition table names no app", field="firmware")
    return image[app.offset - offset :]


class FirmwareRollouts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        hub: EventHub,
        catalog: Catalog,
        link: OtaLink,
        *,
        confirm_s: float = 90,
        follow_s: float = 7 * 86400,
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.catalog = catalog
        self.link = link
        self.confirm_s = confirm_s
        self.follow_s = follow_s  # how long boards that were offline are waited for
        self._tasks: set[asyncio.Task] = set()

    async def start(
        self, firmware_id: int, *, role: str | None = None, devices: list[str] | None = None, by: str | None = None
    ) -> FirmwareRolloutRead:
        if (role is None) == (not devices):
            raise InvalidError("give either role or devices", field="role" if role is None else "devices")
        entry = await self.catalog.get(firmware_id)
        if not entry.ota:
            raise InvalidError(
                f"firmware {entry.id} (MicroPython {entry.version}) has no OTA partition table", field="firmware"
            )
        everyone = await devices_q.list_devices(self.pool)
        if role is not None:
            targets = [d for d in everyone if d.role == role]
            if not targets:
                raise NotFoundError(f"no board has the role {role!r}", field="role")
        else:
            by_name = {d.name: d for d in everyone}
            missing = [n for n in devices if n not in by_name]
            if missing:
                raise NotFoundError(f"no device named {', '.join(missing)}", field="devices")
            targets = [by_name[n] for n in devices]
        busy = await q.devices_in_running_rollouts(self.pool, [d.id for d in targets])
        if busy:
            raise ConflictError(f"{', '.join(busy)} already in a running firmware rollout", field="devices")
        image = app_image(await self.catalog.read_verified(entry), entry.offset)
        target = {"role": role} if role is not None else {"devices": list(devices)}
        # the canary: the first board online (by name), the others in name order
        targets.sort(key=lambda d: (not d.online, d.name))
        rollout_id = await q.insert_firmware_rollout(self.pool, firmware_id, target, [d.id for d in targets], by)
        names = {d.id: d.name for d in targets}
        self._spawn(self._run(rollout_id, image, entry.version, [d.id for d in targets], names))
        self.hub.publish("flash")
        return await self.get(rollout_id)

    def _spawn(self, run) -> None:
        task = asyncio.create_task(run)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> int:
        """At start: the rollouts a master left running (of this site's boards) go on where they were; the number
        resumed. One whose image can no longer be read halts, saying so."""
        resumed = 0
        for rollout_id in await q.running_firmware_rollouts(self.pool):
            rollout = await self.get(rollout_id)
            if not any(self.link.paired(b.device_id) for b in rollout.boards):
                continue  # another site's boards: that site's master resumes it
            try:
                entry = await self.catalog.get(rollout.firmware)
                image = app_image(await self.catalog.read_verified(entry), entry.offset)
            except PifleetError as exc:
                await q.finish_firmware_rollout(self.pool, rollout_id, "halted", f"cannot resume: {exc.detail}")
                continue
            names = {b.device_id: b.device for b in rollout.boards}
            was = {b.device_id: (b.state, b.reason) for b in rollout.boards}
            ids = [b.device_id for b in rollout.boards]
            log.info(
                "firmware rollout %d resumed (%s)",
                rollout_id,
                ", ".join(f"{b.device} {b.state}" for b in rollout.boards),
            )
            self._spawn(self._run(rollout_id, image, entry.version, ids, names, was))
            resumed += 1
        if resumed:
            self.hub.publish("flash")
        return resumed

    async def get(self, rollout_id: int) -> FirmwareRolloutRead:
        found = await q.get_firmware_rollout(self.pool, rollout_id)
        if found is None:
            raise NotFoundError(f"no firmware rollout {rollout_id}", field="rollout_id")
        return found

    async def recent(self, limit: int = 10) -> list[FirmwareRolloutRead]:
        """The running rollouts, then the newest finished ones, each with its boards."""
        return [await self.get(i) for i in await q.recent_firmware_rollouts(self.pool, limit)]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(
        self,
        rollout_id: int,
        image: bytes,
        version: str,
        device_ids: list[str],
        names: dict[str, str],
        was: dict[str, tuple[str, str | None]] | None = None,  # resumed: each board's state and reason before
    ) -> None:
        sha = hashlib.sha256(image).hexdigest()
        started = time.monotonic()
        try:
            waves = [device_ids[:1]] + [device_ids[i : i + WAVE] for i in range(1, len(device_ids), WAVE)]
            waiting: list[str] = []  # offline now: they follow when they register
            for n, wave in enumerate(waves):
                results = await asyncio.gather(*(self._turn(rollout_id, d, image, sha, version, was) for d in wave))
                if n == 0:
                    took = time.monotonic() - started
                    log.info("firmware rollout %d: canary %s after %.1f s", rollout_id, names[wave[0]], took)
                waiting += [d for d, r in zip(wave, results, strict=True) if r == OFFLINE]
                failed = [(d, r) for d, r in zip(wave, results, strict=True) if r not in (None, OFFLINE)]
                if failed:
                    device, reason = failed[0]
                    await q.finish_firmware_rollout(self.pool, rollout_id, "halted", f"{names[device]}: {reason}")
                    return
            deadline = time.monotonic() + self.follow_s
            while waiting and time.monotonic() < deadline:
                online = await devices_q.online_map(self.pool)
                for device in [d for d in waiting if online.get(d)]:
                    reason = await self._one(rollout_id, device, image, sha, version)
                    if reason == OFFLINE:
                        continue  # gone again before its turn
                    waiting.remove(device)
                    if reason is not None:
                        await q.finish_firmware_rollout(self.pool, rollout_id, "halted", f"{names[device]}: {reason}")
                        return
                await asyncio.sleep(1)
            if waiting:
                reason = f"{', '.join(names[d] for d in waiting)} did not come online within {self.follow_s:g} s"
                await q.finish_firmware_rollout(self.pool, rollout_id, "halted", reason)
                return
            await q.finish_firmware_rollout(self.pool, rollout_id, "done", None)
        except Exception as exc:  # noqa: BLE001 — a rollout that breaks says so in its row
            log.exception("firmware rollout %d failed", rollout_id)
            await q.finish_firmware_rollout(self.pool, rollout_id, "halted", repr(exc))
        finally:
            self.hub.publish("flash")

    async def _state(self, rollout_id: int, device_id: str, state: str, **fields: Any) -> None:
        await q.update_firmware_rollout_board(self.pool, rollout_id, device_id, state=state, **fields)
        self.hub.publish("flash")

    async def _progress(self, rollout_id: int, device_id: str, percent: int) -> None:
        await q.update_firmware_rollout_board(self.pool, rollout_id, device_id, progress=percent)
        self.hub.publish("flash")  # the dashboard's rollout panel draws the new percentage

    async def _turn(
        self,
        rollout_id: int,
        device_id: str,
        image: bytes,
        sha: str,
        version: str,
        was: dict[str, tuple[str, str | None]] | None,
    ) -> str | None:
        """A board's turn: None when it ends done, else the reason. In a resumed rollout (`was`) a board done
        before stays done, one that failed is the rollout's reason again, one the master had switched (rebooting,
        confirming, or transferring and already in trial on the new image) is only asked how that ended; one that
        was transferring gets the image again from its start."""
        state, reason = (was or {}).get(device_id, ("pending", None))
        if state == "done":
            return None
        if state in ("rolled_back", "failed"):
            return reason or state
        device = await devices_q.get_by_id(self.pool, device_id)
        if state != "pending" and device is not None and device.address is not None:
            try:
                now = await self.link.ota(device.address, device.port, timeout=5)
            except BoardError:
                now = {}  # still resetting, or off: a switched board is waited for, another one starts again
            switched = now.get("version") == version and now.get("state") == "trial"
            if state != "transferring" or switched:
                return await self._confirm(rollout_id, device_id, device.address, device.port, version)
        return await self._one(rollout_id, device_id, image, sha, version)

    async def _one(self, rollout_id: int, device_id: str, image: bytes, sha: str, version: str) -> str | None:
        """Move one board; None when it runs the new image and confirmed it, else the reason."""
        device = await devices_q.get_by_id(self.pool, device_id)
        if device is None or device.address is None or not device.online:
            await self._state(rollout_id, device_id, "pending", reason=OFFLINE)
            return OFFLINE
        address, port = device.address, device.port
        try:
            before = await self.link.ota(address, port, timeout=30)
            if before.get("version") == version and before.get("state") in ("idle", "valid"):
                await self._state(rollout_id, device_id, "done", progress=100, reason=None, to_version=version)
                return None  # it runs that image already
            await self._state(
                rollout_id, device_id, "transferring", progress=0, reason=None, from_version=before.get("version")
            )
            shown = [0]
            loop = asyncio.get_running_loop()
            pending: set[asyncio.Task] = set()

            def progress(done: int, total: int) -> None:
                percent = 100 * done // total
                if percent >= shown[0] + 5 or done == total:
                    shown[0] = percent
                    t = loop.create_task(self._progress(rollout_id, device_id, percent))
                    pending.add(t)
                    t.add_done_callback(pending.discard)

            await push_set(self.pool, self.link, device, version)  # first its agent for the new .mpy version (sets.py)
            answer = await self.link.put_image(address, port, sha, image, progress)
            await asyncio.gather(*pending)
            await self._state(rollout_id, device_id, "rebooting", progress=100, to_version=answer.get("version"))
        except BoardError as exc:
            await self._state(rollout_id, device_id, "failed", reason=str(exc))
            return str(exc)
        await asyncio.sleep(1)
        return await self._confirm(rollout_id, device_id, address, port, version)

    async def _confirm(self, rollout_id: int, device_id: str, address: str, port: int, version: str) -> str | None:
        """After the switch: None once the board runs `version` and marked it valid, else the reason."""
        deadline = time.monotonic() + self.confirm_s
        seen_trial = False
        while time.monotonic() < deadline:
            try:
                now = await self.link.ota(address, port, timeout=3)
            except BoardError:
                await asyncio.sleep(0.5)
                continue
            if now.get("state") == "trial" and not seen_trial:
                seen_trial = True
                await self._state(rollout_id, device_id, "confirming")
            elif now.get("state") == "valid" and now.get("version") == version:
                await self._state(rollout_id, device_id, "done")
                return None
            elif now.get("state") == "rolled_back":
                reason = now.get("reason") or "the board went back to its previous image"
                await self._state(rollout_id, device_id, "rolled_back", reason=reason)
                return reason
            await asyncio.sleep(0.5)
        reason = f"no confirmation from the board within {self.confirm_s:g} s"
        await self._state(rollout_id, device_id, "failed", reason=reason)
        return reason
