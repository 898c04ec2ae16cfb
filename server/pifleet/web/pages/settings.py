"""The dashboard's settings page (/settings): where the house is (for sun triggers) and its time zone; and the
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


class SettingsPageController(Controller):
    path = "/settings"
    include_in_schema = False

    def _page(self, settings_service: SettingsService, status: int = 200, **context: Any) -> Template:
        current = settings_service.get()
        now = datetime.now(settings_service.zone())
        context = {"page": "settings", "settings": current, "now": now, "error": None, "field": None} | context
        return Template("settings.html", context=context, status_code=status)

    @get("/", operation_id="settingsPage")
    async def settings_page(self, settings_service: SettingsService) -> Template:
        return self._page(settings_service)

    @post("/", operation_id="settingsForm", status_code=200)
    async def settings_form(self, request: Request, settings_service: SettingsService, data: Form) -> Template:
        try:
            await settings_service.put(_write(data), request.state.principal.name)
        except InvalidError as exc:
            return self._page(settings_service, 422, error=exc.detail, field=exc.field, form=data)
        return self._page(settings_service, saved=True)
