"""JSON API of the job engine: jobs, executions, what runs next."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from ...errors import InvalidError
from ...jobs.service import JobService, JobsRefusedError, Refusal
from ...model import DryRun, ExecutionRead, ExecutionState, JobRead, JobSpec, TimelineEntry
from ..contract import NameFilter, Offset, raw_body

JOB_LIST = raw_body(
    "application/json",
    "A JSON list of job documents",
    {"type": "array", "items": {"$ref": "#/components/schemas/JobSpec"}},
)


class JobController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]

    @get("/", operation_id="listJobs", summary="All jobs with their next run")
    async def list_jobs(self, job_service: JobService) -> list[JobRead]:
        return await job_service.list()

    @post(
        "/",
        operation_id="createJob",
        summary="Create a job, or replace the one with the same name",
        status_code=201,
        responses={200: ResponseSpec(JobRead, description="Replaced: a job of that name existed")},
    )
    async def create_job(self, job_service: JobService, data: JobSpec) -> Response[JobRead]:
        job, created = await job_service.save(data)
        return Response(job, status_code=201 if created else 200)

    @post(
        "/dry-run",
        operation_id="dryRunJobDocument",
        summary="Check a job document as saving would, show what it would send and its next five runs; saves nothing",
        status_code=200,
    )
    async def dry_run_document(self, job_service: JobService, data: JobSpec) -> DryRun:
        return await job_service.preview(data)

    @put(
        "/",
        operation_id="applyJobs",
        summary="Create or replace a list of jobs, all or nothing (a refusal names each refused job and field)",
        operation_class=JOB_LIST,
    )
    async def apply_jobs(self, job_service: JobService, request: Request) -> list[JobRead]:
        return await job_service.apply(decode_jobs(await request.body()))

    @get("/{name:str}", operation_id="getJob", summary="One job")
    async def get_job(self, job_service: JobService, name: str) -> JobRead:
        return await job_service.get(name)

    @put("/{name:str}", operation_id="putJob", summary="Create or replace a job by name")
    async def put_job(self, job_service: JobService, name: str, data: JobSpec) -> JobRead:
        if data.name != name:
            raise InvalidError(f"the body names job {data.name!r}, the path {name!r}", field="name")
        job, _ = await job_service.save(data)
        return job

    @delete("/{name:str}", operation_id="deleteJob", summary="Delete a job and its planned runs")
    async def delete_job(self, job_service: JobService, name: str) -> None:
        await job_service.delete(name)

    @post(
        "/{name:str}/run",
        operation_id="runJob",
        summary="Run a job now (its follow-ups follow as usual)",
        status_code=202,
    )
    async def run_job(self, job_service: JobService, name: str) -> ExecutionRead:
        return await job_service.run_now(name)

    @post(
        "/{name:str}/pause",
        operation_id="pauseJob",
        summary="Pause: its runs are skipped until resumed",
        status_code=200,
    )
    async def pause_job(self, job_service: JobService, name: str) -> JobRead:
        return await job_service.set_paused(name, True)

    @post("/{name:str}/resume", operation_id="resumeJob", summary="Resume a paused job", status_code=200)
    async def resume_job(self, job_service: JobService, name: str) -> JobRead:
        return await job_service.set_paused(name, False)

    @post(
        "/{name:str}/dry-run",
        operation_id="dryRunJob",
        summary="Validate against the board now and show what would be sent; sends nothing",
        status_code=200,
    )
    async def dry_run_job(self, job_service: JobService, name: str) -> DryRun:
        return await job_service.dry_run(name)


_AT = re.compile(r"^(.*?)(?: - at `\$\.?([^`]*)`)?$", re.S)
_MISSING = re.compile(r"missing required field `([^`]+)`")


def decode_jobs(body: bytes) -> list[JobSpec]:
    """A JSON list of job documents, each decoded on its own so that a refusal names the job (when the document
    has a name) and the field inside it; all refusals together (JobsRefusedError), or the jobs."""
    try:
        return msgspec.json.decode(body, type=list[JobSpec])  # all well-formed: one pass
    except msgspec.ValidationError:
        pass  # find each document that is not, and say which
    except msgspec.DecodeError as exc:
        raise InvalidError(f"the body must be a JSON list of jobs: {exc}") from None
    try:
        documents = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise InvalidError(f"the body must be a JSON list of jobs: {exc}") from None
    specs, refusals = [], []
    for i, raw in enumerate(documents):
        try:
            specs.append(msgspec.json.decode(raw, type=JobSpec))
        except msgspec.ValidationError as exc:
            message, path = _AT.match(str(exc)).groups()  # type: ignore[union-attr]
            if missing := _MISSING.search(message):
                path = f"{path}.{missing.group(1)}" if path else missing.group(1)
            document = msgspec.json.decode(raw)
            name = document.get("name") if isinstance(document, dict) else None
            refusals.append(Refusal(i, name if isinstance(name, str) else None, path or None, message))
    if refusals:
        raise JobsRefusedError(refusals, len(documents))
    return specs


class TimelineController(Controller):
    path = "/api/timeline"
    tags = ["jobs"]

    @get("/", operation_id="getTimeline", summary="Planned and projected runs over the next days")
    async def timeline(
        self, job_service: JobService, days: Annotated[float, Parameter(gt=0, le=31)] = 7, device: NameFilter = None
    ) -> list[TimelineEntry]:
        return await job_service.timeline(days, device)


class ExecutionController(Controller):
    path = "/api/executions"
    tags = ["executions"]

    @get("/", operation_id="listExecutions", summary="Executions, newest first; filter by job and state")
    async def list_executions(
        self,
        job_service: JobService,
        job: NameFilter = None,
        device: NameFilter = None,
        state_filter: Annotated[ExecutionState | None, Parameter(query="state")] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Offset = 0,
    ) -> list[ExecutionRead]:
        return await job_service.executions(job=job, device=device, state=state_filter, limit=limit, offset=offset)

    @get("/upcoming", operation_id="listUpcoming", summary="Planned runs, soonest first (incl. follow-ups)")
    async def upcoming(
        self, job_service: JobService, limit: Annotated[int, Parameter(ge=1, le=500)] = 50
    ) -> list[ExecutionRead]:
        return await job_service.upcoming(limit)

    @post(
        "/{execution_id:uuid}/cancel", operation_id="cancelExecution", summary="Cancel a planned run", status_code=200
    )
    async def cancel_execution(self, job_service: JobService, execution_id: UUID) -> ExecutionRead:
        return await job_service.cancel(execution_id)

    @get("/{execution_id:uuid}", operation_id="getExecution", summary="One execution")
    async def get_execution(self, job_service: JobService, execution_id: UUID) -> ExecutionRead:
        return await job_service.execution(execution_id)
