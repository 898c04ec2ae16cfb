"""This master as one site among others on the database: its heartbeat, its LISTEN connection, and the exchanges it
relays for the other sites.

The heartbeat (every HEARTBEAT_S) says the site is there; a site not heard of for STALE_S, or stopped, is
unreachable: its boards show `site unreachable`, and nothing is relayed to it. The LISTEN connection hears three
notices on the site's channel, each one small JSON object:

- `{"k": "run", "id", "a", "at"}`: another master planned a run of one of this site's boards (soon: the queue
  sends this only for runs within its alarm horizon; the run's Huey record in this site's queue is the durable
  one) — it goes to this master's alarm;
- `{"k": "call", "id"}`: another master wants an exchange with one of this site's boards (a command, a module
  push …): the request is a `site_calls` row; the answer is written there and the caller notified;
- `{"k": "answer", "id"}`: the answer to a call this master made is there;
- `{"k": "events", "t": [topics]}`: something changed at another site (a run it made ended, a board of its
  registered): this master's event hub hears of it, so its dashboard refreshes those parts too. Each master
  passes on what its own parts publish (not what it heard from another site), a few times a second at most.

A notice lost while the LISTEN connection was down costs a call its answer (the caller times out) or a run its
early start (its Huey record still delivers it). Layer: service; no litestar, no aiocoap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ..devices.link import BoardLink
from ..errors import BoardError, BoardTimeoutError, BoardUnreachableError, PifleetError
from ..events import EventHub
from ..runtime import Background
from . import HEARTBEAT_S, channel
from . import storage as q

log = logging.getLogger(__name__)

RunFn = Callable[[uuid.UUID, int, datetime], None]
# what another site may ask of this site's boards (devices.link.BoardLink, minus what is only ever local)
METHODS = frozenset({"command", "modules", "stats", "restart", "put_module", "put_role"})
_ERRORS: dict[str, type[PifleetError]] = {
    cls.__name__: cls for cls in (PifleetError, BoardError, BoardUnreachableError, BoardTimeoutError)
}
_encode = msgspec.json.encode
_decode = msgspec.json.decode
# what the other sites' dashboards refresh on: notices without data ("refresh this part")
BRIDGED = frozenset({"devices", "jobs", "executions", "roles", "modules", "rollouts", "adoptions"})
_EVENTS_EVERY_S = 0.2


class SiteUnreachableError(BoardError):
    """The board's site is down: its master has not been heard of."""


class Sites:
    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        site: str,
        *,
        local: BoardLink,
        on_run: RunFn,
        hub: EventHub | None = None,
        http_url: str = "",
        coap: str = "",
    ) -> None:
        self.pool, self.url, self.site = pool, url, site
        self.hub = hub
        self._echoes: dict[str, int] = {}  # notices this master republished from other sites, not yet seen again
        self.local = local  # this master's gateway: the boards it owns
        self.on_run = on_run
        self.http_url, self.coap = http_url, coap
        self._listener: asyncpg.Connection | None = None
        self._reachable: dict[str, bool] = {site: True}
        self._waiting: dict[uuid.UUID, asyncio.Future] = {}
        self._background = Background(log, "relayed call")
        self._loop_task: asyncio.Task | None = None

    # -- who is there ----------------------------------------------------------------------------------------

    def live(self) -> frozenset[str]:
        """The sites heard of lately (this one always); read by the queue's threads too."""
        return frozenset(name for name, up in self._reachable.items() if up) | {self.site}

    async def reachable(self, site: str) -> bool:
        if site == self.site:
            return True
        if site in self._reachable:
            return self._reachable[site]
        return await q.reachable(self.pool, site)

    async def _beat(self, starting: bool = False) -> None:
        await q.heartbeat(
            self.pool,
            self.site,
            http_url=self.http_url,
            coap=self.coap,
            host=socket.gethostname(),
            pid=os.getpid(),
            starting=starting,
        )
        self._reachable = {r["name"]: r["reachable"] for r in await q.list_sites(self.pool)} | {self.site: True}

    # -- life cycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        for row in await q.list_sites(self.pool):
            if row["name"] == self.site and row["reachable"] and (row["host"], row["pid"]) != (host, pid):
                # one master per site: two would each keep the boards' OSCORE sequence numbers
                log.warning(
                    "site %s: a master on %s (pid %s) heartbeated %s; run one master per site (or it was killed"
                    " a few seconds ago)",
                    self.site,
                    row["host"],
                    row["pid"],
                    row["heartbeat_at"].isoformat(timespec="seconds"),
                )
        await self._beat(starting=True)
        await self._listen()
        self._loop_task = asyncio.create_task(self._heartbeats(), name="site-heartbeat")
        if self.hub is not None:
            self._background.spawn(self._pass_on_events(self.hub))
        others = sorted(name for name in self.live() if name != self.site)
        log.info("site %s on the database (other sites there now: %s)", self.site, ", ".join(others) or "none")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        await self._background.stop()
        for future in self._waiting.values():
            future.cancel()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        try:
            await q.stopped(self.pool, self.site)
        except (OSError, asyncpg.PostgresError):
            log.warning("could not record the stop of site %s", self.site)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.url)
        await conn.add_listener(channel(self.site), self._notified)
        self._listener = conn

    async def _heartbeats(self) -> None:
        backoff = HEARTBEAT_S
        beats = 0
        while True:
            await asyncio.sleep(backoff)
            try:
                if self._listener is None or self._listener.is_closed():
                    log.warning("site %s: the LISTEN connection was lost; connecting again", self.site)
                    await self._listen()
                await self._beat()
                beats += 1
                if beats % 900 == 0:  # about every half hour
                    await q.prune_calls(self.pool)
                backoff = HEARTBEAT_S
            except (OSError, asyncpg.PostgresError):
                log.exception("site %s: heartbeat failed; retrying", self.site)
                backoff = min(backoff * 2, 30.0)

    # -- notices -------------------------------------------------------------------------------------------------

    def _notified(self, conn, pid: int, channel_name: str, payload: str) -> None:
        try:
            notice = _decode(payload)
            kind = notice["k"]
            if kind == "run":
                self.on_run(uuid.UUID(notice["id"]), int(notice["a"]), datetime.fromisoformat(notice["at"]))
            elif kind == "call":
                self._background.spawn(self._serve(uuid.UUID(notice["id"])))
            elif kind == "events":
                if self.hub is not None:
                    for topic in notice["t"]:
                        if topic in BRIDGED:
                            self._echoes[topic] = self._echoes.get(topic, 0) + 1
                            self.hub.publish(topic)
            elif kind == "answer":
                future = self._waiting.get(uuid.UUID(notice["id"]))
                if future is not None and not future.done():
                    future.set_result(None)
            else:
                log.warning("site %s: unknown notice %r", self.site, payload[:200])
        except (KeyError, ValueError, TypeError, msgspec.DecodeError):
            log.warning("site %s: malformed notice %r", self.site, payload[:200])

    async def _pass_on_events(self, hub: EventHub) -> None:
        """Tell the other live sites what this master's own parts published (gathered for _EVENTS_EVERY_S)."""
        loop = asyncio.get_running_loop()
        with hub.subscribe() as subscription:
            pending: set[str] = set()
            deadline: float | None = None
            while True:
                notice = await subscription.next(60.0 if deadline is None else max(0.0, deadline - loop.time()))
                if notice is not None and notice[0] in BRIDGED and notice[1] == "{}":
                    topic = notice[0]
                    if self._echoes.get(topic, 0) > 0:  # heard from another site: not passed on again
                        self._echoes[topic] -= 1
                    else:
                        pending.add(topic)
                        deadline = deadline or loop.time() + _EVENTS_EVERY_S
                if deadline is None or loop.time() < deadline:
                    continue
                payload = _encode({"k": "events", "t": sorted(pending)}).decode()
                pending.clear()
                deadline = None
                try:
                    for site in self.live() - {self.site}:
                        await q.notify(self.pool, site, payload)
                except (OSError, asyncpg.PostgresError):
                    log.warning("site %s: could not pass on events", self.site)

    @staticmethod
    def run_notice(execution_id: uuid.UUID, attempt: int, when: datetime) -> str:
        return _encode({"k": "run", "id": str(execution_id), "a": attempt, "at": when.isoformat()}).decode()

    # -- relaying ------------------------------------------------------------------------------------------------

    async def call(self, site: str, method: str, args: dict[str, Any], data: bytes | None, timeout: float) -> Any:
        """Have `site`'s master make this exchange with one of its boards; its result, or the error it raised."""
        if not await self.reachable(site):
            raise SiteUnreachableError(f"site {site} unreachable: its master has not been heard of lately")
        future = asyncio.get_running_loop().create_future()
        call_id = await q.new_call(self.pool, site, method, args, data)
        self._waiting[call_id] = future
        try:
            await q.notify(self.pool, site, _encode({"k": "call", "id": str(call_id)}).decode())
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                answer = await q.take_answer(self.pool, call_id)  # a notice lost on the way: the answer may be there
                if answer is None:
                    await q.forget_call(self.pool, call_id)
                    raise BoardTimeoutError(f"no answer through site {site} within {timeout:g} s") from None
            else:
                answer = await q.take_answer(self.pool, call_id)
        finally:
            self._waiting.pop(call_id, None)
        if answer is None:
            raise BoardError(f"site {site} lost the call")
        if "error" in answer:
            cls = _ERRORS.get(answer["error"], BoardError)
            raise cls(answer.get("detail") or "failed", field=answer.get("field"))
        return answer.get("result")

    async def _serve(self, call_id: uuid.UUID) -> None:
        """Another master's call to one of this site's boards: made through this master's gateway, answered in the
        database, the caller notified."""
        row = await q.call_for(self.pool, call_id, self.site)
        if row is None:
            return
        method, args = row["method"], dict(row["args"])
        try:
            if method not in METHODS:
                raise PifleetError(f"site {self.site} does not relay {method!r}")
            if method == "put_module":
                args["data"] = bytes(row["data"] or b"")
            result = await getattr(self.local, method)(**args)
            answer: dict[str, Any] = {"result": result}
        except PifleetError as exc:
            answer = {"error": type(exc).__name__, "detail": exc.detail, "field": exc.field}
        except Exception as exc:  # a bug must not leave the caller waiting for its timeout
            log.exception("relayed %s for site %s failed", method, row["from_site"])
            answer = {"error": "BoardError", "detail": f"internal error at site {self.site}: {exc}", "field": None}
        log.debug("relayed %s for site %s: %s", method, row["from_site"], answer)
        caller = await q.answer_call(self.pool, call_id, answer)
        if caller is not None:
            await q.notify(self.pool, caller, _encode({"k": "answer", "id": str(call_id)}).decode())
