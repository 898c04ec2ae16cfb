"""The dashboard's settings page (/settings): where the house is (for sun triggers), its time zone, and the fleet's
Wi-Fi (the networks, a push of new credentials to every board, each board's network; pifleet/wifi.py); and the
`local` template filter, which shows an instant in the master's zone on every page.

A plain HTML form (it works without JavaScript; the guard in app.py checks its _csrf field): a refusal comes back as
the form again with the message at its field, never as a problem document. A reader sees the values without the
form (and the guard answers 403 to a POST).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from ...errors import InvalidError
from ...model import SettingsWrite
from ...settings import SettingsService
from ...wifi import WifiService, WifiWrite

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
DEFAULT_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def local_filter(zone: Callable[[], ZoneInfo]) -> Callable[..., str]:
    """The `local` filter: `{{ d.last_seen | local }}` → "2026-12-02 21:40:07 CET"; `| local('%H:%M')` for a
    shorter form. A naive datetime is taken as UTC (what the database hands out is aware)."""

    def local(value: datetime | str | None, fmt: str = DEFAULT_FORMAT, missing: str = "—") -> str:
        if value is None or value == "":
            return missing
        if isinstance(value, str):  # an instant as JSON carries it (ISO 8601)
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        return value.astimezone(zone()).strftime(fmt)

    return local


def _write(form: dict[str, str]) -> SettingsWrite:
    """The form's fields as a change: an empty coordinate clears it; an empty time zone leaves it as it is."""
    values: dict[str, Any] = {}
    for key in ("latitude", "longitude"):
        if key in form:
            text = form[key].strip().replace(",", ".")
            try:
                values[key] = float(text) if text else None
            except ValueError:
                raise InvalidError(f"{form[key]!r} is not a number (decimal degrees, e.g. 52.52)", field=key) from None
    if form.get("timezone", "").strip():
        values["timezone"] = form["timezone"].strip()
    try:
        return msgspec.convert(values, SettingsWrite)
    except msgspec.ValidationError as exc:  # "Expected `float` <= 90.0 - at `$.latitude`"
        message, _, where = str(exc).partition(" - at `$.")
        raise InvalidError(message, field=where.rstrip("`") or None) from None


async def _wifi_change(wifi_service: WifiService, form: dict[str, str], by: str) -> str:
    """The Wi-Fi section's buttons: add (or change) a network first in preference, remove one, set fallback_s,
    push to every board. The key comes in this form only; it is never put back into a page."""
    action = form.get("action", "")
    ssid = form.get("ssid", "").strip()
    current = [{"ssid": n.ssid} for n in (await wifi_service.get()).networks]
    if (await wifi_service.get()).source != "settings":
        current = []  # the environment's network has no stored key to keep
    if action == "push":
        pushed = await wifi_service.push()
        return f"Pushing to {len(pushed.pushing)} boards" + (
            f"; offline: {', '.join(pushed.skipped)}" if pushed.skipped else ""
        )
    if action == "remove":
        change: dict[str, Any] = {"networks": [n for n in current if n["ssid"] != ssid]}
    elif action == "fallback":
        try:
            change = {"fallback_s": int(form.get("fallback_s", ""))}
        except ValueError:
            raise InvalidError("a whole number of seconds (5 to 86400)", field="fallback_s") from None
    elif action == "add":
        if not ssid:
            raise InvalidError("give the network's name (SSID)", field="ssid")
        network = {"ssid": ssid}
        if form.get("psk") or form.get("open"):
            network["psk"] = "" if form.get("open") else form["psk"]
        change = {"networks": [network] + [n for n in current if n["ssid"] != ssid]}
    else:
        raise InvalidError("unknown action", field="action")
    try:
        write = msgspec.convert(change, WifiWrite)
    except msgspec.ValidationError as exc:  # never quote the value: it may be the key
        _, _, where = str(exc).partition(" - at `$.")
        where = where.rstrip("`")
        if "psk" in where:
            raise InvalidError("a WPA2 key is 8 to 63 characters (or 64 hex digits)", field="psk") from None
        raise InvalidError(str(exc).partition(" - at ")[0], field=where.split("[")[0] or None) from None
    await wifi_service.put(write, by)
    return "Saved."


class SettingsPageController(Controller):
    path = "/settings"
    include_in_schema = False

    async def _page(
        self, settings_service: SettingsService, wifi_service: WifiService, status: int = 200, **context: Any
    ) -> Template:
        current = settings_service.get()
        now = datetime.now(settings_service.zone())
        context = {
            "page": "settings",
            "settings": current,
            "wifi": await wifi_service.get(),
            "now": now,
            "error": None,
            "field": None,
        } | context
        return Template("settings.html", context=context, status_code=status)

    @get("/", operation_id="settingsPage")
    async def settings_page(self, settings_service: SettingsService, wifi_service: WifiService) -> Template:
        return await self._page(settings_service, wifi_service)

    @post("/", operation_id="settingsForm", status_code=200)
    async def settings_form(
        self, request: Request, settings_service: SettingsService, wifi_service: WifiService, data: Form
    ) -> Template:
        try:
            await settings_service.put(_write(data), request.state.principal.name)
        except InvalidError as exc:
            return await self._page(settings_service, wifi_service, 422, error=exc.detail, field=exc.field, form=data)
        return await self._page(settings_service, wifi_service, saved=True)

    @post("/wifi", operation_id="settingsWifiForm", status_code=200)
    async def wifi_form(
        self, request: Request, settings_service: SettingsService, wifi_service: WifiService, data: Form
    ) -> Template:
        try:
            said = await _wifi_change(wifi_service, data, request.state.principal.name)
        except InvalidError as exc:
            kept = {k: v for k, v in data.items() if k != "psk"}  # the key is never sent back
            return await self._page(
                settings_service, wifi_service, 422, wifi_error=exc.detail, wifi_field=exc.field, wifi_form=kept
            )
        return await self._page(settings_service, wifi_service, wifi_saved=said)
