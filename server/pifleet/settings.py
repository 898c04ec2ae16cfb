"""The household's settings of a master: where the house is (latitude, longitude — for sun triggers) and its time
zone (the dashboard and the CLI show times in it; the API keeps ISO 8601 with offsets). Set through the API
(GET/PUT /api/settings), `pifleet settings`, or the settings page; kept in PostgreSQL (sql/0013).

Layer: service (no litestar, no aiocoap). Defaults, used while a key is not set: PIFLEET_LATITUDE and
PIFLEET_LONGITUDE (the start-up configuration, config.Settings) — else no location, and a sun trigger is refused
saying how to set it; PIFLEET_TIMEZONE, else the machine's own zone (/etc/localtime), else UTC.

The values are read once at the start and kept here (sun triggers are computed often); a change made through
this master takes effect at once, and `changed` re-plans what depends on the location (JobService.replan_sun).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from .config import Settings
from .errors import InvalidError
from .events import EventHub
from .model import SettingsRead, SettingsWrite
from .storage import settings as q

log = logging.getLogger(__name__)

KEYS = ("latitude", "longitude", "timezone")

Changed = Callable[[], Awaitable[Any]]  # called after the location changed

_house = [ZoneInfo("UTC")]  # this process's master's zone, once it loaded its settings


def house_zone() -> ZoneInfo:
    """The master's time zone (its settings): what a cron trigger without `tz` runs in (jobs/triggers.py). UTC in a
    process without a master."""
    return _house[0]


def use_house_zone(tz: ZoneInfo) -> None:
    _house[0] = tz


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of zones ("Europe"), too long
        raise InvalidError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)", field=field) from None


def system_zone(localtime: Path = Path("/etc/localtime")) -> str:
    """The zone this machine runs in: PIFLEET_TIMEZONE, else where /etc/localtime points, else UTC."""
    for name in (os.environ.get("PIFLEET_TIMEZONE"), _zone_of(localtime)):
        if name:
            try:
                ZoneInfo(name)
                return name
            except (ZoneInfoNotFoundError, ValueError, OSError):
                log.warning("time zone %r (of this machine) is unknown; using UTC", name)
    return "UTC"


def _zone_of(localtime: Path) -> str | None:
    try:
        target = str(localtime.resolve(strict=True))
    except OSError:
        return None
    _, found, name = target.partition("/zoneinfo/")
    return name if found else None


class SettingsService:
    def __init__(self, pool: asyncpg.Pool, defaults: Settings, hub: EventHub, changed: Changed | None = None) -> None:
        self.pool = pool
        self.hub = hub
        self._changed = changed
        self._defaults: dict[str, Any] = {
            "latitude": defaults.latitude,
            "longitude": defaults.longitude,
            "timezone": system_zone(),
        }
        self._stored: dict[str, Any] = {}
        self._updated: tuple[datetime, str | None] | None = None

    async def load(self) -> None:
        """Read what is stored (at the start)."""
        rows = await q.all_settings(self.pool)
        self._stored = {r["key"]: r["value"] for r in rows if r["key"] in KEYS}
        latest = max(rows, key=lambda r: r["updated_at"], default=None)
        self._updated = (latest["updated_at"], latest["updated_by"]) if latest else None
        use_house_zone(self.zone())

    def get(self) -> SettingsRead:
        values = self._defaults | self._stored
        updated_at, updated_by = self._updated or (None, None)
        return SettingsRead(
            latitude=values["latitude"],
            longitude=values["longitude"],
            timezone=values["timezone"],
            updated_at=updated_at,
            updated_by=updated_by,
        )

    def location(self) -> tuple[float, float] | None:
        """(latitude, longitude) of the house, or None while either is unknown."""
        s = self.get()
        return None if s.latitude is None or s.longitude is None else (s.latitude, s.longitude)

    def zone(self) -> ZoneInfo:
        return zone(self.get().timezone)

    async def put(self, change: SettingsWrite, by: str | None) -> SettingsRead:
        """Change the keys given (null clears one: its default applies again); the settings as they are then."""
        values = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not msgspec.UNSET}
        if not values:
            raise InvalidError(f"give at least one of {', '.join(KEYS)}", field="body")
        if values.get("timezone") is not None:
            zone(values["timezone"])
        before = self.location()
        await q.put(self.pool, values, by)
        await self.load()
        log.info("settings changed by %s: %s", by, ", ".join(f"{k}={v}" for k, v in values.items()))
        self.hub.publish("settings")
        if self.location() != before and self._changed is not None:
            await self._changed()
        return self.get()
