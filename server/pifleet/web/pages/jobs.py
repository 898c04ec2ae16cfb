"""The jobs page, /jobs: every job with its next run and state, pause/resume/run now/delete, and the editor — a
form for every trigger type and follow-ups that produces the job document `POST /api/jobs` takes
(web/pages/jobform.py), shows each refusal at its field, and previews the next five runs before saving.

Layer: adapter (Litestar + htmx). Forms post here and get a fragment back (the list, or the editor again);
saving goes through the same JobService.save as the API, previewing through JobService.preview (the API's
`POST /api/jobs/dry-run`).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from ...devices.service import DeviceService
from ...errors import PifleetError
from ...jobs.service import JobService
from ...model import JobSpec
from . import jobform

_FOLLOW_UP_COMMAND = re.compile(r"follow_ups\[(\d+)\]\.action\.command")
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


async def _list(jobs: JobService, message: str | None = None, error: bool = False) -> Template:
    listed = await jobs.list()
    triggers = {j.name: msgspec.to_builtins(j.spec.trigger) for j in listed}
    last: dict[str, object] = {}
    for run in await jobs.executions(limit=200):  # newest first: each job's latest run that has started
        if run.job and run.job not in last and run.state != "scheduled":
            last[run.job] = run
    return Template(
        "_jobs.html",
        context={"jobs": listed, "triggers": triggers, "last": last, "message": message, "error": error},
    )


async def _editor(
    devices: DeviceService,
    jobs: JobService,
    form: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    preview: Any = None,
    doc: dict[str, Any] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Template:
    fleet = await devices.list()
    used = [int(m.group(1)) for k, v in form.items() if v and (m := _FOLLOW_UP_COMMAND.fullmatch(k))]
    follow_count = (max(used) + 1 if used else 0) + 1  # and one empty row to add a follow-up in
    return Template(
        "_job_editor.html",
        context={
            "f": form,
            "errors": errors or {},
            "catalog": jobform.catalog(fleet),
            "devices": [d.name for d in fleet],
            "roles": sorted({d.role for d in fleet if d.role}),
            "groups": [g.name for g in await devices.groups()],
            "job_names": [j.name for j in await jobs.list()],
            "follow_count": follow_count,
            "triggers": jobform.TRIGGERS,
            "sun_events": jobform.SUN_EVENTS,
            "outcomes": jobform.OUTCOMES,
            "target_kinds": jobform.TARGET_KINDS,
            "preview": preview,
            "document": json.dumps(doc, indent=2) if doc is not None else None,
            "message": message,
        },
        status_code=status,
    )


async def _checked(devices: DeviceService, jobs: JobService, form: dict[str, str]) -> tuple[Any, Any, Any]:
    """(document, spec, refusal): the form read, decoded as the API decodes a body, checked as saving checks."""
    try:
        doc = jobform.document(form, jobform.catalog(await devices.list()))
    except jobform.FormError as exc:
        return None, None, (exc.field, exc.detail)
    try:
        spec = msgspec.convert(doc, JobSpec)
    except msgspec.ValidationError as exc:
        return doc, None, (jobform.decode_field(exc), str(exc).split(" - at ")[0])
    return doc, spec, None


class JobsPageController(Controller):
    path = "/"
    include_in_schema = False

    @get("/jobs", operation_id="jobsPage")
    async def page(self, job_service: JobService, edit: str | None = None) -> Template:
        return Template("jobs.html", context={"page": "jobs", "edit": edit or ""})

    @get("/ui/jobs", operation_id="uiJobs")
    async def jobs(self, job_service: JobService) -> Template:
        return await _list(job_service)

    @post("/ui/jobs/{name:str}/{action:str}", operation_id="uiJobAction", status_code=200)
    async def act(self, job_service: JobService, name: str, action: str) -> Template:
        try:
            if action == "pause":
                await job_service.set_paused(name, True)
                said = f"{name} paused: its runs are skipped until resumed"
            elif action == "resume":
                await job_service.set_paused(name, False)
                said = f"{name} resumed"
            elif action == "run":
                run = await job_service.run_now(name)
                said = f"{name} runs now (execution {run.id})"
            elif action == "delete":
                await job_service.delete(name)
                said = f"{name} deleted, with its planned runs"
            else:
                raise PifleetError(f"no action {action!r}: pause, resume, run or delete", field="action")
        except PifleetError as exc:
            return await _list(job_service, exc.detail, error=True)
        return await _list(job_service, said)

    @get("/ui/jobs/editor", operation_id="uiJobEditor")
    async def editor(self, device_service: DeviceService, job_service: JobService, edit: str | None = None) -> Template:
        form: dict[str, str] = {"target.kind": "device", "trigger.type": "cron", "trigger.tz": "UTC"}
        message = None
        if edit:
            try:
                form = jobform.form_of(msgspec.to_builtins((await job_service.get(edit)).spec))
                message = f"editing {edit}: saving replaces it"
            except PifleetError as exc:
                message = exc.detail
        return await _editor(device_service, job_service, form, message=message)

    @post("/ui/jobs/editor", operation_id="uiJobEditorRedraw", status_code=200)
    async def redraw(self, device_service: DeviceService, job_service: JobService, data: Form) -> Template:
        """The editor again for what is filled in so far (another trigger type or command chosen)."""
        return await _editor(device_service, job_service, data)

    @post("/ui/jobs/preview", operation_id="uiJobPreview", status_code=200)
    async def preview(self, device_service: DeviceService, job_service: JobService, data: Form) -> Template:
        doc, spec, refusal = await _checked(device_service, job_service, data)
        if refusal is None:
            try:
                dry = await job_service.preview(spec)
            except PifleetError as exc:
                refusal = (exc.field or "", exc.detail)
            else:
                return await _editor(device_service, job_service, data, preview=dry, doc=doc)
        field, detail = refusal
        return await _editor(device_service, job_service, data, errors={jobform.input_for(field): detail}, doc=doc)

    @post("/ui/jobs/save", operation_id="uiJobSave", status_code=200)
    async def save(self, device_service: DeviceService, job_service: JobService, data: Form) -> Template:
        doc, spec, refusal = await _checked(device_service, job_service, data)
        if refusal is None:
            try:
                job, created = await job_service.save(spec)
            except PifleetError as exc:
                refusal = (exc.field or "", exc.detail)
            else:
                said = f"job {job.name} {'created' if created else 'replaced'}"
                return await _editor(
                    device_service, job_service, jobform.form_of(msgspec.to_builtins(job.spec)), doc=doc, message=said
                )
        field, detail = refusal
        return await _editor(device_service, job_service, data, errors={jobform.input_for(field): detail}, doc=doc)
