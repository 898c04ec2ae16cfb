"""The timeline as a picture, /timeline: the next 48 hours (and the last two, for what just ran), one lane per
device, each run and follow-up a mark with its command, a now-line; a mark links to its execution (planned and
past runs) or to its job (runs projected from a trigger, not planned yet). And one execution's page.

Layer: adapter (Litestar + htmx); the geometry is web/pages/charts.py's, the data JobService.timeline's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, tzinfo
from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter
from litestar.response import Template

from ...errors import NotFoundError
from ...jobs.service import JobService
from ...settings import SettingsService
from . import charts

AHEAD = timedelta(hours=48)
BEHIND = timedelta(hours=2)


def _label(job: str | None, capability: str, command: str, params: dict, when: datetime, what: str, tz: tzinfo) -> str:
    args = " ".join(f"{k}={v}" for k, v in params.items())
    at = when.astimezone(tz).strftime("%a %H:%M:%S %Z")
    return f"{at} · {job or 'command'}: {capability}.{command} {args} ({what})".strip()


class TimelinePageController(Controller):
    path = "/"
    include_in_schema = False

    @get("/timeline", operation_id="timelinePage")
    async def page(self) -> Template:
        return Template("timeline.html", context={"page": "timeline"})

    @get("/ui/timeline/picture", operation_id="uiTimelinePicture")
    async def picture(
        self,
        job_service: JobService,
        settings_service: SettingsService,
        hours: Annotated[float, Parameter(gt=0, le=24 * 14)] = 48,
    ) -> Template:
        tz = settings_service.zone()
        now = job_service.clock()
        since, until = now - BEHIND, now + timedelta(hours=hours)
        planned_ids = {
            (e.job, e.device, e.scheduled_for): e.id for e in await job_service.upcoming(500) if e.device is not None
        }
        items = []
        for e in await job_service.timeline(hours / 24):
            if e.device is None:
                continue
            eid = planned_ids.get((e.job, e.device, e.at))
            href = f"/executions/{eid}" if eid else f"/jobs?edit={e.job}"
            what = ("follow-up, " if e.follow_up else "") + e.kind
            label = _label(e.job, e.capability, e.command, e.params, e.at, what, tz)
            items.append((e.at, e.device, e.follow_up, e.kind, label, href))
        for r in await job_service.executions(limit=200):
            at = r.started_at or r.scheduled_for
            if r.state == "scheduled" or r.device is None or not since <= at <= now:
                continue
            what = ("follow-up, " if r.parent_id else "") + r.state
            label = _label(r.job, r.capability, r.command, r.params, at, what, tz)
            items.append((at, r.device, r.parent_id is not None, r.state, label, f"/executions/{r.id}"))
        return Template(
            "_timeline_picture.html",
            context={
                "p": charts.timeline_picture(since, until, now, items, tz),
                "hours": hours,
                "count": len(items),
                "zone": str(tz),
            },
        )

    @get("/executions/{execution_id:str}", operation_id="executionPage")
    async def execution(self, job_service: JobService, execution_id: str) -> Template:
        try:
            run = await job_service.execution(uuid.UUID(execution_id))
        except (ValueError, NotFoundError):
            detail = f"no execution {execution_id}"
            return Template("not_found.html", context={"detail": detail, "page": "timeline"}, status_code=404)
        runs = await job_service.executions(job=run.job, limit=100) if run.job else []
        children = [r for r in runs if r.parent_id == run.id]
        return Template("execution.html", context={"page": "timeline", "r": run, "children": children})
