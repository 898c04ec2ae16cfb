"""The dashboard's pages under the header menu — Boards (the home page: boards, what runs next, last
executions), Roles & modules, Flashing, Adoption, People & tokens — and the Boards page's panels. (The board page
is web/pages/device.py, Jobs web/pages/jobs.py, Timeline web/pages/timeline.py.)

Each panel is an HTML fragment route; a page asks for them with htmx on load and again whenever the server-sent
event stream (/api/events) says that part changed — so it updates itself without a reload. A reader (viewer, read
token) gets the same pages without the controls that change things.
"""

from __future__ import annotations

from litestar import Controller, get
from litestar.response import Template

from ...devices.service import DeviceService
from ...jobs.service import JobService


class DashboardController(Controller):
    path = "/"
    include_in_schema = False

    @get("/", operation_id="dashboard")
    async def index(self) -> Template:
        return Template("index.html", context={"page": "boards"})

    @get("/roles", operation_id="rolesPage")
    async def roles(self) -> Template:
        return Template("roles.html", context={"page": "roles"})

    @get("/flashing", operation_id="flashingPage")
    async def flashing(self, name: str | None = None) -> Template:
        return Template("flashing.html", context={"page": "flashing", "name": name or ""})

    @get("/adoption", operation_id="adoptionPage")
    async def adoption(self) -> Template:
        return Template("adoption.html", context={"page": "adoption"})

    @get("/people", operation_id="peoplePage")
    async def people(self) -> Template:
        return Template("people.html", context={"page": "people"})

    @get("/ui/devices", operation_id="uiDevices")
    async def devices(self, device_service: DeviceService) -> Template:
        return Template("_devices.html", context={"devices": await device_service.list()})

    @get("/ui/timeline", operation_id="uiTimeline")
    async def timeline(self, job_service: JobService, days: float = 2, device: str | None = None) -> Template:
        days = min(max(days, 0.1), 31)
        entries = await job_service.timeline(days, device or None)
        return Template(
            "_timeline.html",
            context={"entries": entries[:200], "total": len(entries), "days": days, "device": device or ""},
        )

    @get("/ui/executions", operation_id="uiExecutions")
    async def executions(self, job_service: JobService) -> Template:
        runs = await job_service.executions(limit=20)
        return Template("_executions.html", context={"runs": [r for r in runs if r.state != "scheduled"]})
