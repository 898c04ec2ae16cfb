"""Each board's live state: what its capabilities report as it changes (a blind's position and motion, a relay's
on/off, a button's last press, a sensor's last values), kept as the newest values per capability and pushed to
the dashboard as `state` notices on the event stream.

Layer: service (no litestar, no aiocoap). Reports come from the gateway: POST /s (a capability's STATE, sent by
the board when it changes: agent/state.py) and POST /t (telemetry: the registry stores its readings and hands the
values here, so a sensor's or a button's state is its last telemetry). The numbers of a state report are stored as
readings too, so a blind's position has a history like a temperature. What the values mean (type, unit) is what
the module the board runs declares (its STATE, or else its TELEMETRY), read from the module's source when it was
stored (modules/builds.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from ..errors import InvalidError
from ..events import EventHub
from ..model import StateRead
from ..storage import devices as devices_q
from ..storage import state as q

MAX_VALUES = 32  # a capability's state is a handful of values; more is a misbehaving board


def numbers(values: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """(dotted path, number) of every number and boolean in a report (true is 1). InvalidError for what cannot be
    stored: a name with NUL (PostgreSQL text takes none), an integer beyond a float."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if "\x00" in path:
            raise InvalidError("names must not contain NUL characters", field="values")
        if isinstance(value, bool | int | float):
            try:
                out.append((path, float(value)))
            except OverflowError:
                raise InvalidError(f"{path}: number out of range", field="values") from None
        elif isinstance(value, dict):
            out.extend(numbers(value, path + "."))
    return out


def storable(values: dict[str, Any]) -> None:
    """InvalidError for values jsonb cannot take: a NUL anywhere (msgspec writes it as \\u0000)."""
    if b"\\u0000" in msgspec.json.encode(values):
        raise InvalidError("must not contain NUL characters", field="values")


class StateService:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub) -> None:
        self.pool = pool
        self.hub = hub

    async def report(self, ep: str, address: str, capability: str, values: dict[str, Any]) -> str | None:
        """A board's state report (POST /s): None, or why it was refused (an unknown board, another address).
        InvalidError for values that cannot be stored."""
        device = await devices_q.get_by_id(self.pool, ep)
        if device is None:
            return f"unknown board {ep!r}"
        if device.address != address:
            return f"board {ep} is registered from {device.address}, not {address}"
        if "\x00" in capability or not capability:
            raise InvalidError("must be a capability name without NUL characters", field="cap")
        if len(values) > MAX_VALUES:
            raise InvalidError(f"at most {MAX_VALUES} values", field="values")
        storable(values)
        rows = [(ep, capability, path, value) for path, value in numbers(values)]
        async with self.pool.acquire() as conn, conn.transaction():
            if rows:
                await devices_q.add_readings(conn, rows)
            await self.record(ep, device.name, capability, values, conn)
        if rows:
            self.hub.publish("telemetry")
        return None

    async def record(self, device_id: str, name: str, capability: str, values: dict[str, Any], db=None) -> None:
        """The capability's newest values (merged into what it reported before); a `state` notice on the event
        stream with its whole state: {"device", "capability", "values", "at"}."""
        storable(values)
        state = await q.record(db or self.pool, device_id, capability, values)
        notice = {"device": name, "capability": capability, "values": state.values, "at": state.at}
        self.hub.publish("state", msgspec.json.encode(notice).decode())

    async def record_many(self, reports: list[tuple[str, str, str, dict[str, Any]]], db) -> None:
        """(device id, name, capability, values) of many reports (a batch of telemetry, checked with `storable`
        before it was buffered) in one statement; one `state` notice per capability with its state after them."""
        states = await q.record_many(db, [(device_id, cap, values) for device_id, _, cap, values in reports])
        names = {device_id: name for device_id, name, _, _ in reports}
        for (device_id, capability), state in states.items():
            notice = {"device": names[device_id], "capability": capability, "values": state.values, "at": state.at}
            self.hub.publish("state", msgspec.json.encode(notice).decode())


async def of_device(db, device_id: str) -> dict[str, StateRead]:
    """Every capability's newest state, with what its module declares about the values (type, unit)."""
    declared = await q.declared(db, device_id)
    return {
        s.capability: StateRead(values=s.values, at=s.at, declared=declared.get(s.capability, {}).get("state") or {})
        for s in await q.of_device(db, device_id)
    }


async def units(db, device_id: str) -> dict[tuple[str, str], str]:
    """The unit of each (capability, path) the device's modules declare one for ("°C", "%")."""
    return {
        (capability, path): unit
        for capability, declared in (await q.declared(db, device_id)).items()
        for path, unit in (declared.get("units") or {}).items()
    }
