"""`pifleet process …`: run a process target (the agent under CPython on this host) in the foreground.

Layer: CLI adapter for process targets (pifleet.process); of the other cli modules it imports only cli.client.
It provisions DATA_DIR/NAME, starts the agent, streams its console, and stops it cleanly (the agent deregisters)
on Ctrl-C or SIGTERM. Like `sim`, a process of its own, not an API client: the target reaches the master over
CoAP only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import default_data_dir
from ..process.target import PROCESS_CAPS, ProcessTarget, master_database_url
from ..sim.foreground import Foreground, console_offset
from .client import host_port


def _caps(value: str) -> tuple[str, ...]:
    caps = tuple(c.strip() for c in value.split(",") if c.strip())
    unknown = [c for c in caps if c not in PROCESS_CAPS]
    if unknown or not caps:
        raise click.BadParameter(f"choose from {', '.join(PROCESS_CAPS)} (comma-separated), got {value!r}")
    return caps


def _databases(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, dsn = value.partition("=")
        if not sep or not name.strip() or not dsn.strip():
            raise click.BadParameter(f"expected NAME=DSN, got {value!r}", param_hint="--database")
        out[name.strip()] = dsn.strip()
    return out


@click.group()
def process() -> None:
    """Process targets: the agent under CPython on this host, offering database and Python jobs."""


@process.command()
@click.argument("name")
@click.option(
    "--caps", "caps", default=",".join(PROCESS_CAPS), show_default=True, help="Capabilities to offer, comma-separated."
)
@click.option(
    "--master", "master", default="127.0.0.1:5683", show_default=True, help="The master's CoAP address HOST:PORT."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: default_data_dir() / "processes",
    show_default="the master's data directory /processes",
    help="Directory holding the process's working directory DATA_DIR/NAME.",
)
@click.option(
    "--ip",
    default=None,
    help="Address to serve on (default: a free 127.0.0.N for a master on loopback, else the address "
    "that routes to the master).",
)
@click.option("--port", type=int, default=5683, show_default=True, help="UDP port to serve CoAP on.")
@click.option(
    "--database",
    "databases",
    multiple=True,
    metavar="NAME=DSN",
    help="A database the db capability may use (repeatable). Without `master=…`, the master's own "
    'database ($DATABASE_URL, or its embedded server) is offered as "master" when found.',
)
@click.option(
    "--modules",
    "modules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the modules python.call may call (default DATA_DIR/NAME/modules).",
)
@click.option("--lifetime", type=int, default=60, show_default=True, help="Registration lifetime in seconds.")
def start(
    name: str,
    caps: str,
    master: str,
    data_dir: Path,
    ip: str | None,
    port: int,
    databases: tuple[str, ...],
    modules_dir: Path | None,
    lifetime: int,
) -> None:
    """Provision and run process target NAME in the foreground; Ctrl-C stops it."""
    cap_names = _caps(caps)
    dbs = _databases(databases)
    notes = []
    if "db" in cap_names and "master" not in dbs:
        if url := master_database_url(default_data_dir()):
            dbs["master"] = url
            notes.append('process: database "master" is the master\'s own database')
        else:
            notes.append(
                "process: no master database found (no $DATABASE_URL, no embedded server running in "
                f"{default_data_dir()}); pass --database master=DSN to offer it"
            )
    try:
        target = ProcessTarget(
            name,
            data_dir / name,
            master=host_port(master),
            caps=cap_names,
            databases=dbs,
            modules_dir=modules_dir,
            ip=ip,
            listen_port=port,
            lifetime=lifetime,
        )
    except (ValueError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"process: {name} ip={target.ip} port={target.listen_port}")
    for note in notes:
        click.echo(note)
    if "db" in cap_names:
        click.echo(f"process: databases {', '.join(sorted(dbs)) or 'none'}")
    if "python" in cap_names:
        click.echo(f"process: modules from {target.modules_dir}")

    console = target.root / "console.log"
    offset = console_offset(console)
    foreground = Foreground()
    target.start()
    asked, code = foreground.follow(console, offset, lambda: target.running, target.stop)
    click.echo(f"process: {name} stopped (exit code {code})")
    sys.exit(0 if asked or code in (0, None) else 1)


COMMANDS = [process]
