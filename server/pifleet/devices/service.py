"""Devices as people see them: the list, one device, its readings, syncing and revoking it, and groups.

Layer: service (no litestar, no aiocoap). What the API and the dashboard ask about devices goes through here;
the board link answers what only the board knows (its module files), the sync and pairing services do the rest.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ..errors import ConflictError, InvalidError, NotFoundError
from ..model import BucketRead, DeviceRead, GroupRead, ReadingRead, ReadingsRange, SeriesRead, StateRead
from ..storage import devices as q
from ..storage import readings as readings_q
from . import state as live
from .link import BoardLink
from .pairing import PairingService

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # names of groups and roles

SyncOne = Callable[[str], Awaitable[str | None]]  # bring one board in line with its role; its sync state


class DeviceService:
    def __init__(self, pool: asyncpg.Pool, link: BoardLink, pairing: PairingService, sync: SyncOne) -> None:
        self.pool = pool
        self.link = link
        self.pairing = pairing
        self._sync = sync

    async def list(self) -> list[DeviceRead]:
        return await q.list_devices(self.pool)

    async def get(self, name: str) -> DeviceRead:
        device = await q.get_by_name(self.pool, name)
        if device is None:
            raise NotFoundError(f"no device named {name!r}", field="name")
        return device

    async def one(self, name: str) -> DeviceRead:
        """A device with its live state (what GET /api/devices/NAME answers)."""
        device = await self.get(name)
        device.state = await live.of_device(self.pool, device.id)
        return device

    async def state(self, name: str) -> dict[str, StateRead]:
        """The live state of each capability of a device, as its board last reported it."""
        return await live.of_device(self.pool, (await self.get(name)).id)

    async def units(self, name: str) -> dict[tuple[str, str], str]:
        """The unit of each (capability, path) of a device's readings, as its modules declare them."""
        return await live.units(self.pool, (await self.get(name)).id)

    async def sync(self, name: str) -> DeviceRead:
        """Bring a board in line with its role now; the device as it is afterwards."""
        device = await self.get(name)
        await self._sync(device.id)
        return await q.get_by_id(self.pool, device.id) or device

    async def _online(self, name: str) -> DeviceRead:
        device = await self.get(name)
        if not device.online or device.address is None or device.port is None:
            raise ConflictError(f"device {name!r} is offline", field="name")
        return device

    async def modules(self, name: str) -> dict[str, Any]:
        """The module files a board holds now and its free space, asked from the board."""
        device = await self._online(name)
        return await self.link.modules(device.address, device.port)

    async def stats(self, name: str) -> dict[str, Any]:
        """What the board reports of itself now (GET /stats): heap used and free, uptime, datagram counters."""
        device = await self._online(name)
        return await self.link.stats(device.address, device.port)

    async def restart(self, name: str) -> DeviceRead:
        """The board restarts (outputs safe, reset); it is back online when it has registered again."""
        device = await self._online(name)
        await self.link.restart(device.address, device.port)
        log.info("%s restarts, as asked", name)
        return device

    async def revoke(self, name: str) -> DeviceRead:
        device = await self.get(name)
        await self.pairing.revoke(device.id)
        return await q.get_by_id(self.pool, device.id) or device

    async def readings(self, name: str, limit: int = 100) -> list[ReadingRead]:
        return await q.readings(self.pool, name, limit)

    async def latest_readings(self, name: str) -> list[readings_q.Latest]:
        """Each series (capability, path) the device has readings of, with its newest value."""
        return await readings_q.latest(self.pool, (await self.get(name)).id)

    async def downsampled(
        self, name: str, range_name: str, span: timedelta, until: datetime, buckets: int, capability=None, path=None
    ) -> ReadingsRange:
        """Every series of the device (or the one named) over [until - span, until), downsampled like the charts."""
        device = await self.get(name)
        units = await live.units(self.pool, device.id)
        since = until - span
        series = []
        for s in await readings_q.latest(self.pool, device.id):
            if (capability is not None and s.capability != capability) or (path is not None and s.path != path):
                continue
            width, found = await self.history(name, s.capability, s.path, since, until, buckets)
            series.append(
                SeriesRead(
                    capability=s.capability,
                    path=s.path,
                    unit=units.get((s.capability, s.path)),
                    buckets=[BucketRead(b.at, b.count, b.low, b.high, b.mean) for b in found],
                )
            )
        width = timedelta(seconds=max(1, math.ceil(span.total_seconds() / max(1, buckets))))
        return ReadingsRange(
            device=device.name,
            range=range_name,
            since=since,
            until=until,
            bucket_s=int(width.total_seconds()),
            series=series,
        )

    async def history(
        self, name: str, capability: str, path: str, since: datetime, until: datetime, buckets: int
    ) -> tuple[timedelta, list[readings_q.Bucket]]:
        """A series over [since, until) downsampled by the database to at most `buckets` buckets (min/max/avg):
        the bucket width and the buckets that hold readings."""
        width = timedelta(seconds=max(1, math.ceil((until - since).total_seconds() / max(1, buckets))))
        device = await self.get(name)
        return width, await readings_q.history(self.pool, device.id, capability, path, since, until, width)

    # -- groups ------------------------------------------------------------------------------------------------

    async def groups(self) -> list[GroupRead]:
        return await q.list_groups(self.pool)

    async def put_group(self, name: str, devices: list[str]) -> GroupRead:
        if not NAME.match(name):
            raise InvalidError("a group name is letters, digits, '-', '_' and '.'", field="name")
        known = {d.name for d in await q.list_devices(self.pool)}
        for i, device in enumerate(devices):
            if device not in known:
                raise InvalidError(f"no device named {device!r}", field=f"devices[{i}]")
        return await q.put_group(self.pool, name, list(dict.fromkeys(devices)))

    async def delete_group(self, name: str) -> None:
        if not await q.delete_group(self.pool, name):
            raise NotFoundError(f"no group named {name!r}", field="name")
