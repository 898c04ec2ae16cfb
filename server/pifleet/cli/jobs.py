"""`pifleet jobs …` and `pifleet executions`: apply jobs from JSON (one, a list, a directory), list, plan, pause,
run now; what ran.

Layer: CLI adapter, a client of the REST API (/api/jobs, /api/timeline, /api/executions) like the rest of the CLI;
it imports only cli.client and the model's execution states.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import click

from ..model import ExecutionState
from .client import api_options, call, check, echo_json, local_time, request, table


@click.group()
def jobs() -> None:
    """Jobs: apply from JSON, list, run now."""


@jobs.command("apply")
@api_options
@click.argument("path", type=click.Path(exists=True, dir_okay=True, readable=True, path_type=Path))
def jobs_apply(url, path: Path) -> None:
    """Create or update jobs from JSON (idempotent by name).

    PATH is a file with one job (an object) or a list of jobs, or a directory of such files (*.json, read in name
    order). A list or a directory goes in one request (PUT /api/jobs): all are saved, or none, and each refused job
    is named with its file and field."""
    documents, origin = _read_jobs(path)
    if path.is_file() and isinstance(json.loads(path.read_bytes()), dict):
        name = documents[0].get("name")
        if not isinstance(name, str):
            raise click.ClickException('the file must be a JSON object with a "name"')
        body = path.read_bytes()
        job = call(url, "PUT", f"/api/jobs/{name}", content=body, headers={"content-type": "application/json"})
        click.echo(f"job {job['name']} saved; next run {local_time(url, job['next_run'], 'not planned')}")
        return
    response = request(url, "PUT", "/api/jobs", json=documents, timeout=300)
    if response.status_code == 422 and "refusals" in _problem(response):
        problem = _problem(response)
        for refusal in problem["refusals"]:
            where = origin[refusal["index"]]
            field = refusal["field"].partition("].")[2] if "]." in refusal["field"] else ""
            job = f"job {refusal['job']}" if refusal["job"] else "a job without a name"
            click.echo(f"{where}: {job}: {field + ': ' if field else ''}{refusal['detail']}", err=True)
        shown = len(problem["refusals"])
        more = f" ({problem['refused'] - shown} more not listed)" if problem["refused"] > shown else ""
        raise click.ClickException(f"{problem['refused']} of {len(documents)} jobs refused{more}; nothing was saved")
    saved = check(response)
    planned = sum(1 for job in saved if job["next_run"])
    click.echo(f"{len(saved)} jobs saved from {path} ({planned} with a next run planned)")


def _read_jobs(path: Path) -> tuple[list, list[str]]:
    """The job documents at PATH and where each came from (`file` or `file[i]`)."""
    files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file()) if path.is_dir() else [path]
    if not files:
        raise click.ClickException(f"no *.json files in {path}")
    documents, origin = [], []
    for file in files:
        try:
            content = json.loads(file.read_bytes())
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{file}: not JSON: {exc}") from None
        if isinstance(content, list):
            documents += content
            origin += [f"{file}[{i}]" for i in range(len(content))]
        elif isinstance(content, dict):
            documents.append(content)
            origin.append(str(file))
        else:
            raise click.ClickException(f"{file}: expected a job (a JSON object) or a list of jobs")
    return documents, origin


def _problem(response) -> dict:
    try:
        problem = response.json()
    except ValueError:
        return {}
    return problem if isinstance(problem, dict) else {}


@jobs.command("list")
@api_options
def jobs_list(url) -> None:
    """List jobs and their next run."""
    items = call(url, "GET", "/api/jobs")
    table(
        [
            [
                j["name"],
                "yes" if j["enabled"] else "no",
                j["spec"]["target"]["device"],
                f"{j['spec']['action']['capability']}.{j['spec']['action']['command']}",
                local_time(url, j["next_run"]),
            ]
            for j in items
        ],
        ["NAME", "ENABLED", "TARGET", "ACTION", "NEXT RUN"],
    )


@jobs.command("run")
@api_options
@click.argument("name")
def jobs_run(url, name) -> None:
    """Run a job now."""
    execution = call(url, "POST", f"/api/jobs/{name}/run")
    click.echo(f"execution {execution['id']} planned for now")


@jobs.command("next")
@api_options
@click.option("--days", default=1.0, show_default=True, help="How far ahead.")
@click.option("--device", help="Only runs on this device.")
def jobs_next(url, days, device) -> None:
    """What will run over the next days: planned runs and projected ones (incl. follow-ups)."""
    params = {"days": days} | ({"device": device} if device else {})
    items = call(url, "GET", "/api/timeline", params=params)
    table(
        [
            [
                local_time(url, e["at"]),
                e["job"] + (" (follow-up)" if e["follow_up"] else ""),
                e["device"] or "-",
                f"{e['capability']}.{e['command']} {json.dumps(e['params'])}",
                e["kind"],
            ]
            for e in items
        ],
        ["WHEN", "JOB", "DEVICE", "ACTION", "KIND"],
    )


@jobs.command("pause")
@api_options
@click.argument("name")
def jobs_pause(url, name) -> None:
    """Pause a job: its runs are recorded as skipped until it is resumed."""
    call(url, "POST", f"/api/jobs/{name}/pause")
    click.echo(f"job {name} paused")


@jobs.command("resume")
@api_options
@click.argument("name")
def jobs_resume(url, name) -> None:
    """Resume a paused job."""
    call(url, "POST", f"/api/jobs/{name}/resume")
    click.echo(f"job {name} resumed")


@jobs.command("dry-run")
@api_options
@click.argument("name")
def jobs_dry_run(url, name) -> None:
    """Check a job against its board now and show what a run would send, without sending it."""
    echo_json(call(url, "POST", f"/api/jobs/{name}/dry-run"))


@click.command()
@api_options
@click.option("--job", help="Only this job's executions.")
@click.option("--device", help="Only executions on this device.")
@click.option("--state", type=click.Choice(typing.get_args(ExecutionState)), help="Only executions in this state.")
@click.option("--limit", default=20, show_default=True)
@click.option("--offset", default=0, show_default=True)
def executions(url, job, device, state, limit, offset) -> None:
    """List executions, newest first."""
    filters = {"job": job, "device": device, "state": state}
    params = {"limit": limit, "offset": offset} | {k: v for k, v in filters.items() if v}
    items = call(url, "GET", "/api/executions", params=params)
    table(
        [
            [
                local_time(url, e["finished_at"] or e["scheduled_for"]),
                e["job"] or f"({e['source']}: {e['actor']})",  # a command sent at once has no job
                e["device"] or "-",
                f"{e['capability']}.{e['command']}",
                e["state"],
                e["error"] or json.dumps(e["result"]),
            ]
            for e in items
        ],
        ["TIME", "JOB", "DEVICE", "ACTION", "STATE", "RESULT"],
    )


COMMANDS = [jobs, executions]
