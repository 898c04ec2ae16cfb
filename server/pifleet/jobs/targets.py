"""Who a job runs on: a device, a process target, or — fanned out, one execution each — every device with a
role or in a group. Resolved against the registry when a job is saved and again when it runs."""

from __future__ import annotations

from ..errors import InvalidError
from ..model import DeviceRead, Target
from ..storage import devices as devices_q

PROCESS_KIND = "pifleet.process"


def check_shape(target: Target, field: str = "target") -> None:
    if not target.kind:
        raise InvalidError("give exactly one of device, role, group or process", field=field)


async def resolve(db, target: Target, field: str = "target") -> list[DeviceRead]:
    """The devices a target means now. A device or process that does not exist is an error; a role or group
    may be empty (boards join later)."""
    check_shape(target, field)
    kind, name = target.kind, target.name
    if kind in ("device", "process"):
        device = await devices_q.get_by_name(db, name)
        if device is None:
            raise InvalidError(f"no {kind} named {name!r}", field=f"{field}.{kind}")
        if kind == "process" and device.kind != PROCESS_KIND:
            raise InvalidError(f"{name!r} is a {device.kind}, not a process target", field=f"{field}.process")
        return [device]
    if kind == "role":
        return [d for d in await devices_q.list_devices(db) if d.role == name]
    members = await devices_q.group_members(db, name)
    if members is None:
        raise InvalidError(f"no group named {name!r}", field=f"{field}.group")
    return [d for d in await devices_q.list_devices(db) if d.name in members]


class Directory:
    """The devices and groups as they are now, read once: resolves the targets of many jobs (a list applied at
    once) with one query for the devices and one per group, as `resolve` would one by one."""

    def __init__(self, db) -> None:
        self.db = db
        self._by_name: dict[str, DeviceRead] | None = None
        self._groups: dict[str, list[str] | None] = {}

    async def device(self, name: str) -> DeviceRead | None:
        if self._by_name is None:
            self._by_name = {d.name: d for d in await devices_q.list_devices(self.db)}
        return self._by_name.get(name)

    async def resolve(self, target: Target, field: str = "target") -> list[DeviceRead]:
        kind = target.kind
        if not kind:
            check_shape(target, field)
        name = getattr(target, kind)
        if kind in ("device", "process"):
            device = await self.device(name)
            if device is None:
                raise InvalidError(f"no {kind} named {name!r}", field=f"{field}.{kind}")
            if kind == "process" and device.kind != PROCESS_KIND:
                raise InvalidError(f"{name!r} is a {device.kind}, not a process target", field=f"{field}.process")
            return [device]
        await self.device("")  # loads the devices
        assert self._by_name is not None
        if kind == "role":
            return sorted((d for d in self._by_name.values() if d.role == name), key=lambda d: d.name)
        if name not in self._groups:
            self._groups[name] = await devices_q.group_members(self.db, name)
        members = self._groups[name]
        if members is None:
            raise InvalidError(f"no group named {name!r}", field=f"{field}.group")
        return sorted((d for d in self._by_name.values() if d.name in members), key=lambda d: d.name)
