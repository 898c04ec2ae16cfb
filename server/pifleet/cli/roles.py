"""`pifleet module …` and `pifleet role …`: role modules, roles as data, assignment, rollouts.

REST clients like the rest of the CLI (/api/modules, /api/roles, /api/rollouts). A role file is JSON or TOML
(docs/modules.md, "A role"); its name is the file's "name" key, else the file name without suffix.

Layer: CLI adapter; it imports only cli.client.
"""

from __future__ import annotations

import json
import time
import tomllib
from email.utils import parsedate_to_datetime
from pathlib import Path

import click

from .client import api_options, call, check, echo_json, json_option, local_time, request, table


def _wait_option(fn):
    return click.option(
        "--wait/--no-wait",
        default=True,
        show_default=True,
        help="Wait until the boards are in sync (or failed), and exit 1 if any failed.",
    )(fn)


# ---- modules ---------------------------------------------------------------------------------------------------


@click.group()
def module() -> None:
    """Role modules: upload (checked by mpy-cross, rolled out to the boards that use it), list, rollouts."""


@module.command("upload")
@api_options
@_wait_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def module_upload(url, wait, file: Path) -> None:
    """Upload a role module (NAME.py); a compile error prints the compiler's message and line, exit status 1.

    A new version is rolled out to the boards whose role uses the module: one board first, the rest when it
    is healthy; a failure halts the rollout."""
    body = {"filename": file.name, "source": file.read_text()}
    response = request(url, "POST", "/api/modules", json=body, timeout=60)
    if response.status_code >= 400:
        problem = response.json() if response.headers.get("content-type", "").endswith("json") else {}
        where = f" (line {problem['line']})" if problem.get("line") else ""
        raise click.ClickException(f"{file.name}{where}: {problem.get('detail', response.text)}")
    m = response.json()
    state = "new version" if response.status_code == 201 else "unchanged"
    click.echo(f"module {m['name']} {m['declared']['version']} ({state}, sha256 {m['sha256'][:12]}…)")
    if m.get("rollout") is None:
        if response.status_code == 201:
            click.echo("no board's role uses it yet")
        return
    click.echo(f"rollout {m['rollout']} started")
    if wait:
        rollout = _follow_rollout(url, m["rollout"])
        if rollout["state"] == "halted":
            raise click.ClickException(f"rollout {rollout['id']} halted at {rollout['failed']}: {rollout['reason']}")


def _follow_rollout(url: str, rollout_id: int, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    shown: set[str] = set()
    while True:
        rollout = call(url, "GET", f"/api/rollouts/{rollout_id}")
        for name in rollout["done"]:
            if name not in shown:
                shown.add(name)
                click.echo(f"  {name}: in sync")
        for name in rollout["skipped"]:
            if name not in shown:
                shown.add(name)
                click.echo(f"  {name}: offline, syncs when it registers")
        if rollout["state"] != "running":
            click.echo(f"rollout {rollout_id} {rollout['state']}")
            return rollout
        if time.monotonic() > deadline:
            raise click.ClickException(f"rollout {rollout_id} still running after {timeout:g} s")
        time.sleep(0.2)


@module.command("list")
@api_options
def module_list(url) -> None:
    """List uploaded modules, every version."""
    items = call(url, "GET", "/api/modules")
    table(
        [
            [
                m["name"],
                m["declared"]["version"],
                m["stem"],
                str(m["size"]),
                "yes" if m["latest"] else "",
                ",".join(m["declared"]["commands"]),
                local_time(url, m["created_at"]),
            ]
            for m in items
        ],
        ["NAME", "VERSION", "FILE", "BYTES", "LATEST", "COMMANDS", "UPLOADED"],
    )


@module.command("rollouts")
@api_options
def module_rollouts(url) -> None:
    """Recent rollouts: where each stands, where one halted and why."""
    items = call(url, "GET", "/api/rollouts")
    table(
        [
            [
                str(r["id"]),
                f"{r['module']} {r['sha256'][:10]}",
                r["state"],
                f"{len(r['done'])}/{len(r['devices'])}",
                r["failed"] or "",
                r["reason"],
            ]
            for r in items
        ],
        ["ID", "MODULE", "STATE", "DONE", "HALTED AT", "REASON"],
    )


# ---- roles -----------------------------------------------------------------------------------------------------


@click.group()
def role() -> None:
    """Roles as data: which modules a board runs, their configuration, the role's jobs."""


def _read_role(file: Path) -> tuple[str, dict]:
    text = file.read_text()
    try:
        data = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{file.name}: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{file.name}: a role is an object (name, description, modules, jobs)")
    name = data.pop("name", file.stem)
    return name, data


def _server_time(response_date: str | None) -> float:
    return parsedate_to_datetime(response_date).timestamp() - 1 if response_date else time.time() - 1


def _wait_in_sync(url: str, names: list[str], since: float, timeout: float = 300) -> bool:
    """Print each board's sync outcome; True when none failed."""
    from datetime import datetime

    deadline = time.monotonic() + timeout
    waiting = set(names)
    ok = True
    while waiting:
        for name in sorted(waiting):
            device = call(url, "GET", f"/api/devices/{name}")
            sync = device.get("sync")
            if sync is None or sync["state"] == "updating":
                continue
            if datetime.fromisoformat(sync["updated_at"]).timestamp() < since:
                continue
            waiting.discard(name)
            reason = f" ({sync['reason']})" if sync["reason"] else ""
            click.echo(f"  {name}: {sync['state'].replace('_', ' ')}{reason}")
            ok = ok and sync["state"] != "failed"
        if waiting and time.monotonic() > deadline:
            raise click.ClickException(f"still not in sync after {timeout:g} s: {', '.join(sorted(waiting))}")
        if waiting:
            time.sleep(0.2)
    return ok


@role.command("apply")
@api_options
@_wait_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def role_apply(url, wait, file: Path) -> None:
    """Create or replace a role from a JSON or TOML file; its boards are brought in line."""
    name, body = _read_role(file)
    started = time.time()
    response = request(url, "PUT", f"/api/roles/{name}", json=body, timeout=60)
    r = check(response)  # a problem answer raises with its detail and field
    click.echo(
        f"role {r['name']}: modules {', '.join(r['modules']) or 'none'}; jobs {', '.join(r['jobs']) or 'none'}; "
        f"boards {', '.join(r['devices']) or 'none'}"
    )
    if (
        wait
        and r["devices"]
        and not _wait_in_sync(
            url,
            r["devices"],
            _server_time(response.headers.get("date")) if response.headers.get("date") else started - 1,
        )
    ):
        raise click.ClickException("some boards did not take the role (see above)")


@role.command("assign")
@api_options
@_wait_option
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="MODULE.KEY=VALUE",
    help="The boards' own configuration (a JSON value, else a string), e.g. --set blind.up_s=24.5",
)
@click.argument("role_name", metavar="ROLE")
@click.argument("devices", nargs=-1, required=True)
def role_assign(url, wait, settings, role_name, devices) -> None:
    """Give boards a role; what they lack is pushed and switched on without a reflash."""
    body: dict = {"devices": list(devices)}
    for item in settings:
        key, sep, raw = item.partition("=")
        module_name, dot, option = key.partition(".")
        if not sep or not dot:
            raise click.BadParameter(f"{item!r} is not MODULE.KEY=VALUE", param_hint="--set")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        body.setdefault("config", {}).setdefault(module_name, {})[option] = value
    started = time.time()
    call(url, "POST", f"/api/roles/{role_name}/assign", json=body)
    click.echo(f"role {role_name} assigned to {', '.join(devices)}")
    if wait and not _wait_in_sync(url, list(devices), started - 1):
        raise click.ClickException("some boards did not take the role (see above)")


@role.command("list")
@api_options
@json_option
def role_list(url, as_json) -> None:
    """Roles, their modules, jobs and boards."""
    items = call(url, "GET", "/api/roles")
    if as_json:
        echo_json(items)
        return
    table(
        [
            [
                r["name"],
                ",".join(r["modules"]) or "-",
                ",".join(r["jobs"]) or "-",
                ",".join(r["devices"]) or "-",
                "" if r["defined"] else "(named by a board only)",
            ]
            for r in items
        ],
        ["ROLE", "MODULES", "JOBS", "BOARDS", ""],
    )


COMMANDS = [module, role]
