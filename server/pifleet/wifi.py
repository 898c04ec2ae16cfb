"""The fleet's Wi-Fi: the networks every board may join, in order of preference, and the household's "new router"
(issue 17). Set through GET/PUT /api/wifi, `pifleet wifi set SSID --psk-file FILE`, or the settings page; kept in
the settings table (row 'wifi'); flashing writes them into each board's config.json; a push sends them to every
board the master can reach (PUT /w on the board, OSCORE-protected like every request to a paired board).

Layer: service (no litestar, no aiocoap). Default while nothing is stored: PIFLEET_WIFI_SSID/PIFLEET_WIFI_PSK
(config.Settings), as before this setting existed.

A key (psk) is a secret: it is written to the database and to the boards, and nowhere else — never logged, never
in an API answer (`psk_set: true` says one is stored), never in an event. Per board the master keeps what the board
last said about its network (sql/0021: which one it uses, whether it took the pushed one).

The access point a board opens when it cannot join any of them (micropython/agent/portal.py) is `pifleet-XXXXXX`
(the last six hex digits of its MAC) with a WPA2 password the master can show for a board it paired:
ap_password(secret), an HMAC keyed by the board's secret, which the board derives the same way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import asyncpg
import msgspec
from msgspec import Meta, Struct

from .config import Settings
from .errors import BoardError, BoardUnreachableError, InvalidError, NotFoundError
from .events import EventHub
from .storage import devices as devices_q
from .storage import settings as settings_q
from .storage import wifi as q

log = logging.getLogger(__name__)

KEY = "wifi"  # the settings row
FALLBACK_S = 300  # a board that joined none of its networks for this long opens its access point
MAX_NETWORKS = 8
SETTLE_S = 90.0  # how long a push waits for a board to say which network it ended on

Ssid = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]
# WPA2: a passphrase of 8..63 printable ASCII characters, or 64 hex digits; "" for an open network
Psk = Annotated[str, Meta(max_length=64, pattern=r"^(|[\x20-\x7e]{8,63}|[0-9A-Fa-f]{64})$")]
FallbackS = Annotated[int, Meta(ge=5, le=86400)]


class NetworkWrite(Struct, forbid_unknown_fields=True):
    """One network as a person sets it; without psk the key stored for that SSID is kept."""

    ssid: Ssid
    psk: Psk | msgspec.UnsetType = msgspec.UNSET


class WifiWrite(Struct, forbid_unknown_fields=True):
    """PUT /api/wifi: the networks in order of preference (they replace the list), and/or fallback_s."""

    networks: Annotated[list[NetworkWrite], Meta(max_length=MAX_NETWORKS)] | msgspec.UnsetType = msgspec.UNSET
    fallback_s: FallbackS | msgspec.UnsetType = msgspec.UNSET


class NetworkRead(Struct):
    ssid: str
    psk_set: bool  # a key is stored (never shown)


class BoardWifiRead(Struct):
    device: str  # the board's name
    device_id: str
    online: bool
    ssid: str | None  # the network it said it uses
    took_new: bool | None  # after the last push: it joined one of the pushed networks
    state: str  # unknown | pushing | joined | kept_old | unreachable | refused
    error: str | None
    pushed_at: datetime | None
    updated_at: datetime | None


class WifiRead(Struct):
    """GET /api/wifi: the networks (keys never shown), where they come from, and each board's network."""

    networks: list[NetworkRead]
    fallback_s: int
    source: str  # "settings" (set here), "environment" (PIFLEET_WIFI_SSID) or "none"
    updated_at: datetime | None
    updated_by: str | None
    boards: list[BoardWifiRead]


class PushRead(Struct):
    """POST /api/wifi/push: the boards the credentials are on their way to (follow GET /api/wifi)."""

    pushing: list[str]
    skipped: list[str]  # offline boards: they fall back to their access point if their network goes away


class AccessPointRead(Struct):
    """GET /api/wifi/ap/NAME: the access point a paired board opens when it joins no network."""

    device: str
    ssid: str | None  # pifleet-XXXXXX (None: the master does not know the board's MAC)
    password: str


class WifiLink(Protocol):
    async def wifi(self, address: str, port: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """PUT /w with body (new credentials), or GET /w: the board's {"ssid", "busy", "old"}."""
        ...


def ap_ssid(mac: str | None) -> str | None:
    return "pifleet-" + mac.replace(":", "")[-6:].lower() if mac else None


def ap_password(secret: bytes) -> str:
    """The WPA2 password of a paired board's access point: 12 base32 characters of HMAC-SHA-256(secret,
    "pifleet-ap") — micropython/agent/portal.py derives the same (60 bits; a board without a secret, never paired,
    makes up a random one and prints it on its console)."""
    digest = hmac.new(secret, b"pifleet-ap", hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:12].lower()


class WifiService:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub, link: WifiLink, defaults: Settings) -> None:
        self.pool = pool
        self.hub = hub
        self.link = link
        self._env = (defaults.wifi_ssid, defaults.wifi_psk)
        self._stored: dict[str, Any] | None = None
        self._updated: tuple[datetime, str | None] | None = None
        self._tasks: set[asyncio.Task] = set()
        self.settle_s = SETTLE_S

    async def load(self) -> None:
        row = next((r for r in await settings_q.all_settings(self.pool) if r["key"] == KEY), None)
        self._stored = row["value"] if row is not None else None
        self._updated = (row["updated_at"], row["updated_by"]) if row is not None else None

    # -- what flashing and pushes write to a board ------------------------------------------------------------

    def networks(self) -> list[tuple[str, str]]:
        """(ssid, psk) in order of preference: the setting, else PIFLEET_WIFI_SSID/PIFLEET_WIFI_PSK, else none."""
        if self._stored is not None and self._stored.get("networks"):
            return [(n["ssid"], n.get("psk", "")) for n in self._stored["networks"]]
        return [self._env] if self._env[0] else []

    def fallback_s(self) -> int:
        return int((self._stored or {}).get("fallback_s", FALLBACK_S))

    def board_config(self) -> dict[str, Any] | None:
        """config.json's "wifi" for a board (docs/agent.md): {"nets": [[ssid, psk], …], "fallback_s": N}; None when
        no network is known (flashing then writes an empty SSID, as before: the board opens its access point
        after fallback_s)."""
        nets = self.networks()
        return {"nets": [list(n) for n in nets], "fallback_s": self.fallback_s()} if nets else None

    # -- the setting ------------------------------------------------------------------------------------------

    async def get(self) -> WifiRead:
        stored = self._stored is not None and bool(self._stored.get("networks"))
        source = "settings" if stored else ("environment" if self._env[0] else "none")
        updated_at, updated_by = self._updated or (None, None)
        return WifiRead(
            networks=[NetworkRead(ssid, bool(psk)) for ssid, psk in self.networks()],
            fallback_s=self.fallback_s(),
            source=source,
            updated_at=updated_at,
            updated_by=updated_by,
            boards=await self.boards(),
        )

    async def boards(self) -> list[BoardWifiRead]:
        return [
            BoardWifiRead(
                device=r["name"],
                device_id=r["id"],
                online=r["online"],
                ssid=r["ssid"],
                took_new=r["took_new"],
                state=r["state"],
                error=r["error"],
                pushed_at=r["pushed_at"],
                updated_at=r["updated_at"],
            )
            for r in await q.boards(self.pool)
        ]

    async def put(self, change: WifiWrite, by: str | None) -> WifiRead:
        """Replace the list of networks (a network given without psk keeps the key stored for its SSID) and/or
        fallback_s."""
        if change.networks is msgspec.UNSET and change.fallback_s is msgspec.UNSET:
            raise InvalidError("give networks, fallback_s or both", field="body")
        value: dict[str, Any] = {"networks": [{"ssid": s, "psk": k} for s, k in self.networks()]}
        value["fallback_s"] = self.fallback_s()
        if change.networks is not msgspec.UNSET:
            known = dict(self.networks())
            networks = []
            for i, net in enumerate(change.networks):
                if any(n["ssid"] == net.ssid for n in networks):
                    raise InvalidError(f"{net.ssid!r} is listed twice", field=f"networks[{i}].ssid")
                if net.psk is msgspec.UNSET and net.ssid not in known:
                    raise InvalidError(f"give the key of {net.ssid!r} (a new network)", field=f"networks[{i}].psk")
                psk = known[net.ssid] if net.psk is msgspec.UNSET else net.psk
                networks.append({"ssid": net.ssid, "psk": psk})
            value["networks"] = networks
        if change.fallback_s is not msgspec.UNSET:
            value["fallback_s"] = change.fallback_s
        await settings_q.put(self.pool, {KEY: value}, by)
        await self.load()
        # the SSIDs only: a key never reaches a log line
        log.info(
            "wifi changed by %s: %s, fallback %d s",
            by,
            ", ".join(n["ssid"] for n in value["networks"]) or "no networks",
            value["fallback_s"],
        )
        self.hub.publish("settings")
        return await self.get()

    async def access_point(self, name: str) -> AccessPointRead:
        device = await devices_q.get_by_name(self.pool, name)
        if device is None:
            raise NotFoundError(f"no device {name!r}", field="name")
        secret = await q.secret(self.pool, device.id)
        if not secret:
            raise NotFoundError(f"{name} has no secret here: its access point password is on its console")
        mac = await self.pool.fetchval("select mac from devices where id = $1", device.id)
        return AccessPointRead(device=name, ssid=ap_ssid(mac), password=ap_password(bytes(secret)))

    # -- the new router ---------------------------------------------------------------------------------------

    async def push(self) -> PushRead:
        """Send the networks to every board that is online (PUT /w); each keeps its old networks until it has
        joined a new one. Returns at once; each board's outcome lands in GET /api/wifi as it comes."""
        nets = self.networks()
        if not nets:
            raise InvalidError("no Wi-Fi networks to push: set them first (PUT /api/wifi)", field="networks")
        body = {"nets": [list(n) for n in nets], "fallback_s": self.fallback_s()}
        pushing, skipped = [], []
        now = datetime.now(UTC)
        for row in await q.boards(self.pool):
            if not row["online"] or row["address"] is None:
                skipped.append(row["name"])
                continue
            pushing.append(row["name"])
            await q.record(self.pool, row["id"], "pushing", pushed_at=now)
            task = asyncio.create_task(self._push_one(row["id"], row["name"], body, {s for s, _ in nets}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        log.info("wifi pushed to %d boards (%s); offline: %s", len(pushing), ", ".join(pushing), skipped or "none")
        self.hub.publish("devices")
        return PushRead(pushing=pushing, skipped=skipped)

    async def _push_one(self, device_id: str, name: str, body: dict[str, Any], new: set[str]) -> None:
        try:
            await self._settle(device_id, name, body, new)
        except Exception:  # a background push never dies unrecorded
            log.exception("wifi push to %s failed", name)
            await q.record(self.pool, device_id, "unreachable", error="the push failed on the master (see its log)")
        self.hub.publish("devices")

    async def _where(self, device_id: str) -> tuple[str, int] | None:
        device = await devices_q.get_by_id(self.pool, device_id)
        return (device.address, device.port) if device and device.address and device.port else None

    async def _settle(self, device_id: str, name: str, body: dict[str, Any], new: set[str]) -> None:
        where = await self._where(device_id)
        if where is None:
            await q.record(self.pool, device_id, "unreachable", error="no address")
            return
        try:
            answer = await self.link.wifi(*where, body)
        except BoardError as exc:
            state = "unreachable" if isinstance(exc, BoardUnreachableError) else "refused"
            log.info("wifi push to %s: %s", name, exc)
            await q.record(self.pool, device_id, state, error=str(exc))
            return
        # the board answered at once and now tries the new networks (its link may be down meanwhile): ask until
        # it says it is done
        deadline = time.monotonic() + self.settle_s
        last_error = None
        while answer.get("busy") and time.monotonic() < deadline:
            await asyncio.sleep(1)
            where = await self._where(device_id) or where  # a new network may have given it a new address
            try:
                answer = await self.link.wifi(*where)
                last_error = None
            except BoardError as exc:
                last_error = str(exc)
        if answer.get("busy"):
            await q.record(self.pool, device_id, "unreachable", error=last_error or "still switching")
            return
        ssid = answer.get("ssid") or None
        took = ssid in new
        log.info("wifi push to %s: %s on %s", name, "joined the new network" if took else "kept the old", ssid)
        await q.record(self.pool, device_id, "joined" if took else "kept_old", ssid=ssid, took_new=took)

    async def refresh(self, name: str) -> BoardWifiRead:
        """Ask one board which network it uses now (GET /w)."""
        device = await devices_q.get_by_name(self.pool, name)
        if device is None:
            raise NotFoundError(f"no device {name!r}", field="name")
        if not device.address or not device.port:
            raise BoardError(f"{name} has no address: it is not registered")
        answer = await self.link.wifi(device.address, device.port)
        ssid = answer.get("ssid") or None
        took = ssid in {s for s, _ in self.networks()}
        await q.record(self.pool, device.id, "joined" if took else "kept_old", ssid=ssid, took_new=took)
        return next(b for b in await self.boards() if b.device_id == device.id)

    async def watch(self, every_s: float = 30.0) -> None:
        """Ask the boards that went back to an old network (state kept_old) which one they are on, every every_s: a
        board that took the new one since (the household took the old router away) shows as joined, and a board
        that restarted meanwhile watches its link again (GET /w starts that on the board)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                for row in await q.boards(self.pool):
                    if row["state"] == "kept_old" and row["online"]:
                        try:
                            await self.refresh(row["name"])
                        except BoardError as exc:
                            log.info("wifi: could not ask %s: %s", row["name"], exc)
            except Exception:  # a background loop never dies (huey's Worker)
                log.exception("wifi watch failed; trying again in %g s", every_s)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
