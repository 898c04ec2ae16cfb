"""`pifleet sim …`: run virtual ESP32 boards from the command line.

Layer: CLI adapter for the sim (pifleet.sim); of the other cli modules it imports only cli.client. It provisions
and boots one board in the foreground, streams its console, and stops it cleanly (the agent deregisters) on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import default_data_dir
from ..sim.board import DEFAULT_HEAPSIZE, ROLES, VirtualBoard
from ..sim.flash import parse_size
from ..sim.foreground import Foreground, console_offset
from .client import host_port


@click.group()
def sim() -> None:
    """Virtual ESP32 boards running the real agent in MicroPython."""


@sim.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(sorted(ROLES)),
    default=None,
    help="A board flashed elsewhere with this role preset: it has no identity here and asks to be "
    "adopted (confirm the code on its console). Not needed with --erased.",
)
@click.option("--flash-size", default="4MB", show_default=True, help="Flash size of the chip (4MB, 8MB, 16MB).")
@click.option("--erased", is_flag=True, help="Start with a blank flash: the chip waits for esptool.")
@click.option(
    "--master", "master", default="127.0.0.1:5683", show_default=True, help="The master's CoAP address HOST:PORT."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: default_data_dir() / "boards",
    show_default="the master's data directory /boards",
    help="Directory holding the board (DATA_DIR/NAME/flash and io).",
)
@click.option("--ip", default=None, help="Board address (default: a free 127.0.0.N).")
@click.option(
    "--heapsize", type=int, default=DEFAULT_HEAPSIZE, show_default=True, help="MicroPython heap in bytes (ESP32-like)."
)
@click.option("--lifetime", type=int, default=60, show_default=True, help="Registration lifetime in seconds.")
@click.option(
    "--netns",
    default=None,
    help="Run the board in its own network namespace NETNS, linked to the host by a veth pair on a private LAN "
    "(10.231.N.0/24; needs root). The master must listen on the LAN's host address (or 0.0.0.0).",
)
@click.option(
    "--netem",
    default=None,
    help='tc netem on the namespace\'s link, each direction: "loss 20% delay 40ms 30ms reorder 5% duplicate 1%" '
    "(implies --netns NAME). A kernel without sch_netem gets the same in user space, as long as this command runs.",
)
def start(
    name: str,
    role: str | None,
    flash_size: str,
    erased: bool,
    master: str,
    data_dir: Path,
    ip: str | None,
    heapsize: int,
    lifetime: int,
    netns: str | None,
    netem: str | None,
) -> None:
    """Boot board NAME in the foreground; Ctrl-C stops it. The first line is `serial: PORT` (esptool, mpremote).

    Pair it with the master by flashing it (--erased, then flash it from the dashboard or `pifleet flash`) or
    by adoption (--role: confirm the code its console prints)."""
    if role is None and not erased:
        raise click.UsageError("--role is needed unless the board starts --erased")
    try:
        size = parse_size(flash_size)
    except ValueError:
        raise click.BadParameter(f"not a size: {flash_size}", param_hint="--flash-size") from None
    lan = link = None
    master_at = host_port(master)
    if netns or netem:
        lan, link = _namespace(netns or name, netem)
        ip = link.ip
        if master_at[0] in ("127.0.0.1", "localhost", "::1"):  # loopback is the namespace's own: use the LAN's
            master_at = (lan.host_ip, master_at[1])
    board = VirtualBoard(
        name,
        data_dir / name,
        role=role,
        master=master_at,
        ip=ip,
        netns=link.name if link else None,
        heapsize=heapsize,
        lifetime=lifetime,
        flash_size=size,
        erased=erased,
    )
    try:
        board.provision(identity=False)  # like a board flashed elsewhere: the master pairs it by adoption
        console = board.io / "console.log"
        offset = console_offset(console)
        foreground = Foreground()
        board.start()
        click.echo(f"serial: {board.serial_port}")
        click.echo(
            f"board: {name} ip={board.ip} port={board.listen_port} flash={board.flash_path} "
            f"pins={board.io / 'pins.log'}"
        )
        if link is not None:
            click.echo(
                f"netns: {link.name} ip={link.ip} link={link.impairment}; master at {master_at[0]}:{master_at[1]} "
                f"(pifleet serve --coap-host {lan.host_ip} or 0.0.0.0)"
            )
        asked, code = foreground.follow(console, offset, lambda: board.powered, board.stop)
    finally:
        if lan is not None:
            lan.close()
    click.echo(f"board: {name} stopped (exit code {code})")
    sys.exit(0 if asked or code in (0, None) else 1)


def _namespace(name: str, netem: str | None):
    """The LAN and the board's namespace on it (sim/netns.py), or a usage error saying why not."""
    from ..sim import netns

    if netem:
        try:
            netns.parse_netem(netem)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--netem") from None
    try:
        lan = netns.Lan()
    except netns.NetnsError as exc:
        raise click.UsageError(f"--netns: {exc}") from None
    try:
        return lan, lan.add(name, netem)
    except netns.NetnsError as exc:
        lan.close()
        raise click.UsageError(f"--netns/--netem: {exc}") from None


COMMANDS = [sim]
