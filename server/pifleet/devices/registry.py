"""The device registry: registrations and heartbeats from boards, their capabilities, online/offline.

A board registers in the style of RFC 9176 (docs/protocol.md); the registry records it, answers with a
registration id, and then reads the board's capability descriptions over the BoardLink.

Heartbeats and telemetry are the master's busiest input: they are checked here one by one and written in batches
(storage/batch.py: one statement and one commit for all that arrived together); each caller still gets its own
answer once its batch is committed. `close()` writes what is still buffered (before the pool closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..errors import BoardError, BoardTimeoutError, InvalidError
from ..events import EventHub
from ..storage import devices as q
from ..storage import readings as readings_q
from ..storage.batch import Batcher
from .link import BoardLink, Described
from .state import StateService, numbers, storable

log = logging.getLogger(__name__)

MIN_LIFETIME_S, MAX_LIFETIME_S = 5, 86400
_COMMAND_LINK = re.compile(r"<(/a/[^>]*)>")  # a command's link in a board's link-format (docs/protocol.md)
# a capability read the board did not answer (a lossy link: GET /cap gets 4 transmissions in its 30 s) is tried again
# after 2, 4, 8 … 60 s, for as long as the registration it followed stands
CAPS_RETRY_S = (2.0, 60.0)


class Registry:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub, link: BoardLink, described: Described | None = None) -> None:
        self.pool = pool
        self.hub = hub
        self.link = link
        self._tasks: set[asyncio.Task] = set()  # fire-and-forget capability reads, kept alive here
        self._online: dict[str, bool] = {}
        # device id -> the command links of the description its answer to a role switch gave (switched()): the
        # update with its new links that follows needs no GET /cap when they are the same
        self._switched: dict[str, frozenset[str]] = {}
        # device id -> when its last links update came (loop time), and the waiters for its next (relinked())
        self._relinks: dict[str, float] = {}
        self._relink_waiters: dict[str, asyncio.Event] = {}
        # called with (device id, its /cap description) after each registration: the role sync hooks in here
        self.on_described = described
        # called with the device id at the first heartbeat this master hears from a board since it started or since
        # the board was offline (it may have run planned runs by itself meanwhile: jobs/autonomy.py)
        self.on_heard: Callable[[str], None] | None = None
        self._heard: set[str] = set()
        self._heartbeats = Batcher(self._touch, name="heartbeats")
        self._reports = Batcher(self._store, name="telemetry")
        self.states = StateService(pool, hub)  # live state: POST /s, and the last telemetry of each capability

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
        self._spawn(self.refresh_capabilities(ep, address, port, registration_id))
        self.hub.publish("devices")
        return registration_id

    async def close(self) -> None:
        """Write the heartbeats and telemetry still buffered (capability reads still waiting to try again end)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(self._heartbeats.close(), self._reports.close())

    async def update(self, registration_id: str, lifetime_s: int | None, address: str, port: int) -> bool:
        return await self.heartbeat(registration_id, None, lifetime_s, address, port)

    async def heartbeat(
        self, registration_id: str, device_id: str | None, lifetime_s: int | None, address: str, port: int
    ) -> bool:
        """A registration update from `device_id` (None: from whoever owns the registration); False if there is no
        such registration, or it is another board's."""
        device_id = await self._heartbeats.submit(q.Heartbeat(registration_id, device_id, lifetime_s, address, port))
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

    def switched(self, device_id: str, described: dict[str, Any]) -> None:
        """A board answered a role switch in place with what it runs now (its /cap, which modules/sync.py stores):
        the registration update with its new links that follows (relink) needs no GET /cap of its own."""
        caps = described.get("caps")
        if isinstance(caps, list):
            commands = [(c.get("name"), c.get("commands", ())) for c in caps if isinstance(c, dict)]
            self._switched[device_id] = frozenset(f"/a/{name}/{command}" for name, each in commands for command in each)

    async def relink(
        self,
        registration_id: str,
        device_id: str,
        links: str,
        role: str | None,
        lifetime_s: int | None,
        address: str,
        port: int,
    ) -> bool:
        """A registration update with new links (RFC 9176 §5.3): the board switched its role in place, without a
        restart, so its plan and time stand. Its capabilities are read (GET /cap, then the role sync and the plan,
        as after a registration) unless its answer to the switch already said them: the same command links."""
        found = await q.relink_registration(
            self.pool,
            registration_id=registration_id,
            device_id=device_id,
            links=links,
            role=role,
            lifetime_s=lifetime_s,
            address=address,
            port=port,
        )
        if not found:
            return False
        self.link.bind(device_id, address, port)
        log.info("board %s updated its links (role %s)", device_id, role, extra={"device": device_id})
        if self._switched.pop(device_id, None) != frozenset(_COMMAND_LINK.findall(links)):
            self._spawn(self.refresh_capabilities(device_id, address, port, registration_id))
        self._relinks[device_id] = asyncio.get_running_loop().time()
        waiter = self._relink_waiters.pop(device_id, None)
        if waiter is not None:
            waiter.set()
        self.hub.publish("devices")
        return True

    async def relinked(self, device_id: str, since: float, timeout: float) -> bool:
        """Whether the board updated its links (after a switch in place) at or after loop time `since`, waiting up to
        `timeout` s for it. Its agent sends the update right after its answer to the switch, from its loop on the new
        role; the update may be handled here before the answer is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._relinks.get(device_id, -1.0) < since:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter = self._relink_waiters.setdefault(device_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), left)
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

    async def refresh_capabilities(
        self, device_id: str, address: str, port: int, registration_id: str | None = None
    ) -> None:
        """Read what the board offers (GET /cap) and keep it. With `registration_id`, a read the board did not
        answer in time is tried again (CAPS_RETRY_S) while that registration stands: without its capabilities a
        board is registered but no job can use it, and it registers anew only when the master forgets it."""
        delay, cap = CAPS_RETRY_S
        while True:
            try:
                described = await self.link.capabilities(address, port)
                caps: list[dict[str, Any]] = described["caps"]
                await q.replace_capabilities(self.pool, device_id, caps)
                break
            except BoardTimeoutError as exc:
                if registration_id is not None and await q.registration_owner(self.pool, registration_id) == device_id:
                    log.info(
                        "could not read the capabilities of %s at %s:%d: %s; trying again in %g s",
                        device_id,
                        address,
                        port,
                        exc,
                        delay,
                        extra={"device": device_id},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, cap)
                    continue
                error: Exception = exc
            except (BoardError, KeyError, TypeError) as exc:
                error = exc
            log.warning(
                "could not read the capabilities of %s at %s:%d: %s",
                device_id,
                address,
                port,
                error,
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
        """Store what a board reported by itself; None, or why it was refused (an unknown board, or one registered
        from another address). InvalidError for what cannot be stored."""
        if "\x00" in capability:
            raise InvalidError("must not contain NUL characters", field="cap")
        storable(values)  # here, not in the batch: one report that cannot be stored must not fail the others
        report = readings_q.Report(ep, address, capability, numbers(values), datetime.now(UTC))
        return await self._reports.submit((report, values))

    async def _touch(self, beats: list[q.Heartbeat]) -> list[str | None]:
        return await q.touch_registrations(self.pool, beats)

    async def _store(self, batch: list[tuple[readings_q.Report, dict[str, Any]]]) -> list[str | None]:
        """A batch of telemetry in one transaction: the readings in one statement, then each stored report's values
        as its capability's last state."""
        async with self.pool.acquire() as conn, conn.transaction():
            findings = await readings_q.store_reports(conn, [report for report, _ in batch])
            states = [
                (report.device_id, found.name, report.capability, values)
                for (report, values), found in zip(batch, findings, strict=True)
                if found.refusal is None
            ]
            if states:  # each capability's last state: one statement for the batch too
                await self.states.record_many(states, conn)
        if any(found.refusal is None for found in findings):
            self.hub.publish("telemetry")  # one notice for the batch: "readings changed"
        return [found.refusal for found in findings]

    async def mark_unreachable(self, device_id: str, reason: str, heard: datetime | None = None) -> None:
        await q.mark_unreachable(self.pool, device_id, reason, heard)
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
