"""`pifleet …`: the command line. `serve`, `demo`, `sim` and `process` are processes of their own; every other
command is a client of the REST API (`--url`, default the local master; `--token` or the token `pifleet login`
stored), so anything it does, a script can do over HTTP.

Layer: CLI adapter. This module is the `pifleet` group and nothing else: it adds each command file's COMMANDS.
Those files import cli.client (the shared REST call, tables, --url/--token) and never this module, so the CLI has
no import circle. `[project.scripts] pifleet = "pifleet.cli:main"` and `python -m pifleet` start `main`.
"""

from __future__ import annotations

from importlib import metadata

import click

from .. import resources
from . import (
    adoption,
    auth,
    backup,
    board,
    devices,
    do,
    doctor,
    flashing,
    jobs,
    logs,
    process,
    roles,
    serve,
    service,
    settings,
    sim,
    wifi,
)


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"pifleet {metadata.version('pifleet')}, agent {resources.agent_version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the package's and the board agent's versions.",
)
def main() -> None:
    """pifleet — run a home fleet of MicroPython boards from a Raspberry Pi."""


for _module in (
    serve,
    devices,
    logs,
    do,
    jobs,
    flashing,
    adoption,
    board,
    roles,
    auth,
    sim,
    process,
    service,
    backup,
    doctor,
    settings,
    wifi,
):
    for _command in _module.COMMANDS:
        main.add_command(_command)
del _module, _command

__all__ = ["main"]
