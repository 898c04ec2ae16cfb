"""JSON API of the job engine: jobs, executions, what runs next."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post, put
from litestar.params import Parameter

from ...errors import InvalidError, NotFoundError
from ...master import Master
from ...model import DryRun, ExecutionRead, ExecutionState, JobRead, JobSpec, TimelineEntry
from ...storage import jobs as q


class JobController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]

    @get("/", operation_id="listJobs", summary="All jobs with their next run")
    async def list_jobs(self, master: Master) -> list[JobRead]:
        return await q.list_jobs(master.pool)

    @post("/", operation_id="createJob", summary="Create a job, or replace the one with the same name", status_code=201)
    async def create_job(self, master: Master, data: JobSpec) -> Response[JobRead]:
        job, created = await master.jobs.save(data)
        return Response(job, status_code=201 if created else 200)

    @get("/{name:str}", operation_id="getJob", summary="One job")
    async def get_job(self, master: Master, name: str) -> JobRead:
        return await master.jobs.get(name)

    @put("/{name:str}", operation_id="putJob", summary="Create or replace a job by name")
    async def put_job(self, master: Master, name: str, data: JobSpec) -> JobRead:
        if data.name != name:
            raise InvalidError(f"the body names job {data.name!r}, the path {name!r}", field="name")
        job, _ = await master.jobs.save(data)
        return job

    @delete("/{name:str}", operation_id="deleteJob", summary="Delete a job and its planned runs")
    async def delete_job(self, master: Master, name: str) -> None:
        await master.jobs.delete(name)

    @post(
        "/{name:str}/run",
        operation_id="runJob",
        summary="Run a job now (its follow-ups follow as usual)",
        status_code=202,
    )
    async def run_job(self, master: Master, name: str) -> ExecutionRead:
        return await master.jobs.run_now(name)

    @post(
        "/{name:str}/pause",
        operation_id="pauseJob",
        summary="Pause: its runs are skipped until resumed",
        status_code=200,
    )
    async def pause_job(self, master: Master, name: str) -> JobRead:
        return await master.jobs.set_paused(name, True)

    @post("/{name:str}/resume", operation_id="resumeJob", summary="Resume a paused job", status_code=200)
    async def resume_job(self, master: Master, name: str) -> JobRead:
        return await master.jobs.set_paused(name, False)

    @post(
        "/{name:str}/dry-run",
        operation_id="dryRunJob",
        summary="Validate against the board now and show what would be sent; sends nothing",
        status_code=200,
    )
    async def dry_run_job(self, master: Master, name: str) -> DryRun:
        return await master.jobs.dry_run(name)


class TimelineController(Controller):
    path = "/api/timeline"
    tags = ["jobs"]

    @get("/", operation_id="getTimeline", summary="Planned and projected runs over the next days")
    async def timeline(
        self, master: Master, days: Annotated[float, Parameter(gt=0, le=31)] = 7, device: str | None = None
    ) -> list[TimelineEntry]:
        return await master.jobs.timeline(days, device)


class ExecutionController(Controller):
    path = "/api/executions"
    tags = ["executions"]

    @get("/", operation_id="listExecutions", summary="Executions, newest first; filter by job and state")
    async def list_executions(
        self,
        master: Master,
        job: str | None = None,
        device: str | None = None,
        state_filter: Annotated[ExecutionState | None, Parameter(query="state")] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
    ) -> list[ExecutionRead]:
        return await q.list_executions(
            master.pool, job=job, device=device, state=state_filter, limit=limit, offset=offset
        )

    @get("/upcoming", operation_id="listUpcoming", summary="Planned runs, soonest first (incl. follow-ups)")
    async def upcoming(
        self, master: Master, limit: Annotated[int, Parameter(ge=1, le=500)] = 50
    ) -> list[ExecutionRead]:
        return await master.jobs.upcoming(limit)

    @post(
        "/{execution_id:uuid}/cancel", operation_id="cancelExecution", summary="Cancel a planned run", status_code=200
    )
    async def cancel_execution(self, master: Master, execution_id: UUID) -> ExecutionRead:
        return await master.jobs.cancel(execution_id)

    @get("/{execution_id:uuid}", operation_id="getExecution", summary="One execution")
    async def get_execution(self, master: Master, execution_id: UUID) -> ExecutionRead:
        execution = await q.get_execution(master.pool, execution_id)
        if execution is None:
            raise NotFoundError(f"no execution {execution_id}", field="execution_id")
        return execution
