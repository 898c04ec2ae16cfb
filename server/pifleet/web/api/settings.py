"""JSON API of the master's settings: where the house is (sun triggers) and its time zone.

Layer: web adapter over pifleet.settings.SettingsService. Reading needs a login; changing needs a writer (the guard
in app.py), and the change records who made it.
"""

from __future__ import annotations

from litestar import Controller, get, put

from ...auth.model import Principal
from ...model import SettingsRead, SettingsWrite
from ...settings import SettingsService


class SettingsController(Controller):
    path = "/api/settings"
    tags = ["settings"]

    @get("/", operation_id="getSettings", summary="The master's location (for sun triggers) and time zone")
    async def get_settings(self, settings_service: SettingsService) -> SettingsRead:
        return settings_service.get()

    @put(
        "/",
        operation_id="putSettings",
        summary="Change settings: only the keys given change; null brings a key back to its default",
    )
    async def put_settings(
        self, settings_service: SettingsService, principal: Principal, data: SettingsWrite
    ) -> SettingsRead:
        return await settings_service.put(data, principal.name)
