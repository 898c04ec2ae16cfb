"""`pifleet jobs …` and `pifleet executions`: apply a job from JSON, list, plan, pause, run now; what ran.

Layer: CLI adapter, a client of the REST API (/api/jobs, /api/timeline, /api/executions) like the rest of the CLI;
it imports only cli.client and the model's execution states.
"""

from __future__ import annotations

import json
import typing

import click

from ..model import ExecutionState
from .client import api_options, call, echo_json, table


@click.group()
def jobs() -> None:
    """Jobs: apply from JSON, list, run now."""


@jobs.command("apply")
@api_options
@click.argument("file", type=click.File("rb"))
def jobs_apply(url, file) -> None:
    """Create or update a job from a JSON file (idempotent by name)."""
    body = file.read()
    try:
        name = json.loads(body)["name"]
    except (ValueError, KeyError, TypeError):
        raise click.ClickException('the file must be a JSON object with a "name"') from None
    job = call(url, "PUT", f"/api/jobs/{name}", content=body, headers={"content-type": "application/json"})
    click.echo(f"job {job['name']} saved; next run {job['next_run'] or 'not planned'}")


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
                j["next_run"] or "-",
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
                e["at"],
                e["job"] + (" (follow-up)" if e["follow_up"] else ""),
                e["device"] or "-",
                f"{e['capability']}.{e['command']} {json.dumps(e['params'])}",
                e["kind"],
            ]
            for e in items
        ],
        ["WHEN (UTC)", "JOB", "DEVICE", "ACTION", "KIND"],
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
                e["finished_at"] or e["scheduled_for"],
                e["job"],
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
