"""The board page, /devices/NAME: controls generated from the board's declared commands, its live state, charts
of its stored readings, its recent executions, its modules and sync state, and its actions.

Layer: adapter (Litestar + htmx). The controls send `POST /api/devices/NAME/commands` from dashboard/static/
pifleet.js (the API answers, no page route in between); the page's parts re-render on the event stream's
"devices", "executions" and "telemetry" notices; the live state (what the board's capabilities report as it
changes: a blind's position while it moves) is updated in place from the stream's `state` events by
dashboard/static/device-state.js. Readers see everything but the controls and actions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from litestar import Controller, get, post
from litestar.response import Template

from ...devices.service import DeviceService
from ...errors import NotFoundError, PifleetError
from ...jobs.service import JobService
from ...model import DeviceRead
from ...settings import SettingsService
from . import charts, controls

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
Range = Literal["24h", "7d", "30d"]
BUCKETS = 240  # at most this many points per chart (a 720-unit wide plot: one per 3 units)


def _now() -> datetime:
    return datetime.now().astimezone()


def _last_results(runs: list[Any]) -> list[tuple[str, Any, datetime]]:
    """The newest result of each command that answered something (blind.position → {"position": 40})."""
    seen: dict[str, tuple[str, Any, datetime]] = {}
    for r in runs:  # newest first
        key = f"{r.capability}.{r.command}"
        if r.state == "succeeded" and r.result not in (None, {}, []) and key not in seen:
            seen[key] = (key, r.result, r.finished_at or r.started_at or r.scheduled_for)
    return list(seen.values())


class DevicePageController(Controller):
    path = "/"
    include_in_schema = False

    @get("/devices/{name:str}", operation_id="devicePage")
    async def page(self, device_service: DeviceService, name: str) -> Template:
        try:
            device = await device_service.get(name)
        except NotFoundError as exc:
            return Template("not_found.html", context={"detail": exc.detail, "page": "boards"}, status_code=404)
        return Template(
            "device.html",
            context={
                "page": "boards",
                "device": device,
                "commands": controls.commands(device.capabilities),
                "series": await device_service.latest_readings(name),
                "ranges": list(RANGES),
                "state": await device_service.state(name),
            },
        )

    @get("/ui/devices/{name:str}/live", operation_id="uiDeviceLive")
    async def live(self, device_service: DeviceService, name: str) -> Template:
        """The live state panel again (device-state.js asks for it when a value it has no place for arrives)."""
        device = await device_service.get(name)
        return Template("_device_live.html", context={"device": device, "state": await device_service.state(name)})

    @get("/ui/devices/{name:str}/state", operation_id="uiDeviceState")
    async def state(self, device_service: DeviceService, job_service: JobService, name: str) -> Template:
        device = await device_service.get(name)
        runs = await job_service.executions(device=name, limit=50)
        return Template(
            "_device_state.html",
            context={
                "device": device,
                "series": await device_service.latest_readings(name),
                "results": _last_results(runs),
                "now": _now(),
            },
        )

    @get("/ui/devices/{name:str}/executions", operation_id="uiDeviceExecutions")
    async def executions(self, job_service: JobService, name: str) -> Template:
        runs = await job_service.executions(device=name, limit=15)
        return Template("_executions.html", context={"runs": [r for r in runs if r.state != "scheduled"]})

    @get("/ui/devices/{name:str}/chart", operation_id="uiDeviceChart")
    async def chart(
        self,
        device_service: DeviceService,
        settings_service: SettingsService,
        name: str,
        capability: str,
        path: str,
        range: Range = "24h",
    ) -> Template:
        until = _now()
        since = until - RANGES[range]
        width, buckets = await device_service.history(name, capability, path, since, until, BUCKETS)
        unit = (await device_service.units(name)).get((capability, path))  # as the board's module declares it
        return Template(
            "_chart.html",
            context={
                "device": name,
                "capability": capability,
                "path": path,
                "range": range,
                "ranges": list(RANGES),
                "bucket": width,
                "chart": charts.line_chart(buckets, since, until, width, settings_service.zone()),
                "zone": str(settings_service.zone()),
                "unit": unit or "",
            },
        )

    @get("/ui/devices/{name:str}/modules", operation_id="uiDeviceModules")
    async def modules(self, device_service: DeviceService, name: str) -> Template:
        """The files the board holds now, asked from the board (only when a person asks: it is a request to it)."""
        try:
            held: dict[str, Any] | None = await device_service.modules(name)
            error = None
        except PifleetError as exc:
            held, error = None, exc.detail
        return Template("_device_modules.html", context={"held": held, "error": error})

    @post("/ui/devices/{name:str}/sync", operation_id="uiSyncDevice", status_code=200)
    async def sync(self, device_service: DeviceService, name: str) -> Template:
        return await _action(
            device_service,
            name,
            device_service.sync,
            lambda d: f"sync: {d.sync.state.replace('_', ' ') if d.sync else 'nothing to do'}",
        )

    @post("/ui/devices/{name:str}/restart", operation_id="uiRestartDevice", status_code=200)
    async def restart(self, device_service: DeviceService, name: str) -> Template:
        return await _action(
            device_service,
            name,
            device_service.restart,
            lambda d: f"{d.name} restarts: it is back when it has registered again (a few seconds)",
        )

    @post("/ui/devices/{name:str}/revoke", operation_id="uiRevokeDevice", status_code=200)
    async def revoke(self, device_service: DeviceService, name: str) -> Template:
        return await _action(
            device_service,
            name,
            device_service.revoke,
            lambda d: f"{d.name} revoked: it is refused from now on; flash or adopt it to pair it again",
        )


async def _action(
    device_service: DeviceService,
    name: str,
    act: Callable[[str], Awaitable[DeviceRead]],
    said: Callable[[DeviceRead], str],
) -> Template:
    """One of the board's actions (sync, restart, revoke): the actions panel again, with what came of it."""
    try:
        device = await act(name)
        message, error = said(device), False
    except PifleetError as exc:
        device, message, error = await device_service.get(name), exc.detail, True
    return Template("_device_actions.html", context={"device": device, "message": message, "error": error})
