"""The device registry: registrations and heartbeats from boards, their capabilities, online/offline.

A board registers in the style of RFC 9176 (docs/protocol.md); the registry records it, answers with a
registration id, and then reads the board's capability descriptions over the BoardLink.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg

from ..errors import BoardError, InvalidError
from ..events import EventHub
from ..storage import devices as q
from .link import BoardLink, Described

log = logging.getLogger(__name__)

MIN_LIFETIME_S, MAX_LIFETIME_S = 5, 86400


class Registry:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub, link: BoardLink, described: Described | None = None) -> None:
        self.pool = pool
        self.hub = hub
        self.link = link
        self._tasks: set[asyncio.Task] = set()  # fire-and-forget capability reads, kept alive here
        self._online: dict[str, bool] = {}
        # called with (device id, its /cap description) after each registration: the role sync hooks in here
        self.on_described = described
        # called with the device id at the first heartbeat this master hears from a board since it started or since
        # the board was offline (it may have run planned runs by itself meanwhile: jobs/autonomy.py)
        self.on_heard: Callable[[str], None] | None = None
        self._heard: set[str] = set()

    async def register(
        self,
        *,
        ep: str,
        lifetime_s: int,
        kind: str,
        name: str | None,
        role: str | None,
        mpy: int | None,
        firmware: str | None,
        agent_version: str | None,
        links: str,
        address: str,
        port: int,
        safe_mode: str | None = None,
    ) -> str:
        registration_id = secrets.token_hex(4)
        if role:
            await q.ensure_role(self.pool, role)
        await q.upsert_registration(
            self.pool,
            device_id=ep,
            name=name or ep,
            kind=kind,
            role=role or None,
            address=address,
            port=port,
            registration_id=registration_id,
            lifetime_s=lifetime_s,
            firmware=firmware,
            mpy=mpy,
            agent_version=agent_version,
            links=links,
            safe_mode=safe_mode,
        )
        self.link.bind(ep, address, port)
        if safe_mode:
            log.warning("board %s is in safe mode: %s", ep, safe_mode, extra={"device": ep})
        log.info(
            "board %s registered from %s:%d (role %s, lifetime %d s)",
            ep,
            address,
            port,
            role,
            lifetime_s,
            extra={"device": ep},
        )
        self._spawn(self.refresh_capabilities(ep, address, port))
        self.hub.publish("devices")
        return registration_id

    async def update(self, registration_id: str, lifetime_s: int | None, address: str, port: int) -> bool:
        device_id = await q.touch_registration(self.pool, registration_id, lifetime_s, address, port)
        if device_id is None:
            return False
        self.link.bind(device_id, address, port)
        if not self._online.get(device_id):
            self.hub.publish("devices")
        if device_id not in self._heard:
            self._heard.add(device_id)
            if self.on_heard is not None:
                self.on_heard(device_id)
        return True

    async def owner(self, registration_id: str) -> str | None:
        """The device a registration belongs to."""
        return await q.registration_owner(self.pool, registration_id)

    async def remove(self, registration_id: str) -> bool:
        device_id = await q.remove_registration(self.pool, registration_id)
        if device_id:
            log.info("board %s deregistered", device_id, extra={"device": device_id})
            self.hub.publish("devices")
        return device_id is not None

    async def refresh_capabilities(self, device_id: str, address: str, port: int) -> None:
        try:
            described = await self.link.capabilities(address, port)
            caps: list[dict[str, Any]] = described["caps"]
            await q.replace_capabilities(self.pool, device_id, caps)
        except (BoardError, KeyError, TypeError) as exc:
            log.warning(
                "could not read the capabilities of %s at %s:%d: %s",
                device_id,
                address,
                port,
                exc,
                extra={"device": device_id},
            )
            return
        log.info(
            "board %s offers %s",
            device_id,
            ", ".join(c["name"] for c in caps) or "nothing",
            extra={"device": device_id},
        )
        self.hub.publish("devices")
        if self.on_described is not None:
            await self.on_described(device_id, described)

    async def telemetry(self, ep: str, address: str, capability: str, values: dict[str, Any]) -> str | None:
        """Store what a board reported by itself; None, or why it was refused."""
        device = await q.get_by_id(self.pool, ep)
        if device is None:
            return f"unknown board {ep!r}"
        if device.address != address:
            return f"board {ep} is registered from {device.address}, not {address}"
        if "\x00" in capability:
            raise InvalidError("must not contain NUL characters", field="cap")
        rows = [(ep, capability, path, value) for path, value in _numbers(values)]
        if rows:
            await q.add_readings(self.pool, rows)
        self.hub.publish("telemetry")
        return None

    async def mark_unreachable(self, device_id: str, reason: str) -> None:
        await q.mark_unreachable(self.pool, device_id, reason)
        self.hub.publish("devices")

    async def watch(self, interval: float = 1.0) -> None:
        """Notice boards going offline by lifetime expiry (nothing arrives when a board falls silent)."""
        while True:
            try:
                online = await q.online_map(self.pool)
                if online != self._online:
                    self._heard -= {d for d, up in online.items() if not up}
                    self._online = online
                    self.hub.publish("devices")
            except (OSError, asyncpg.PostgresError):
                log.exception("device watch failed; retrying")
            await asyncio.sleep(interval)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _numbers(values: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """(dotted path, number) of every number and boolean in a reading (true is 1). InvalidError for what
    cannot be stored: a name with NUL (PostgreSQL text takes none), an integer beyond a float."""
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
            out.extend(_numbers(value, path + "."))
    return out
