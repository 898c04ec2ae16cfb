"""`pifleet service install|uninstall`: the systemd unit that runs `pifleet serve` on a Pi.

Layer: CLI adapter. It runs locally, not through the REST API: it writes a file on this machine (the master it
sets up is not running yet), and needs no master. It never calls systemctl; it prints what to run.

The unit runs the master as an ordinary user (the embedded PostgreSQL refuses root), restarts it on failure, and
sandboxes it with what systemd offers where it fits a master that flashes boards over USB: the whole file system
read-only but the data directory, no new privileges or capabilities, a private /tmp, the kernel's knobs out of
reach. It keeps /dev (no PrivateDevices=, nothing that implies a device allow-list): the serial ports of the
boards are there, opened through the group dialout.
"""

from __future__ import annotations

import getpass
import os
import pwd
import sys
from importlib import metadata
from pathlib import Path

import click

UNIT_NAME = "pifleet.service"
UNIT_DIR = Path("/etc/systemd/system")
WANTED_BY = "multi-user.target"
SERIAL_GROUP = "dialout"  # Debian's and Raspberry Pi OS's owner group of /dev/ttyUSB*, /dev/ttyACM*
_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))  # what ProtectHome= hides


def _quoted(arg: str) -> str:
    """One argument as systemd reads it: % doubled (specifiers), quoted if it holds blanks or quotes."""
    arg = arg.replace("%", "%%")
    if any(c.isspace() or c in "\"'\\" for c in arg):
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _under_home(path: Path) -> bool:
    return any(path == home or home in path.parents for home in _HOMES)


def _executable() -> list[str]:
    """How systemd starts this very installation: its `pifleet` script beside its Python, else `python -m`."""
    script = Path(sys.executable).parent / "pifleet"  # a venv's or pipx's bin/, not resolved: keep the venv
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pifleet"]


def render_unit(user: str, data_dir: Path, coap_host: str, executable: list[str]) -> str:
    """The unit's text: `pifleet serve` as USER on DATA_DIR, HTTP on loopback, CoAP on COAP_HOST."""
    command = [*executable, "serve", "--host", "127.0.0.1", "--coap-host", coap_host, "--data-dir", str(data_dir)]
    # pipx, `pip install --user` and pyenv put the program or its Python under a home directory, so is the per-user
    # data directory: then the homes stay readable (and the data directory writable), else they are hidden
    needed = [Path(executable[0]), Path(sys.executable).resolve(), Path(sys.prefix), Path(sys.base_prefix), data_dir]
    home = "read-only" if any(_under_home(path) for path in needed) else "yes"
    return f"""\
# Written by `pifleet service install` (pifleet {_version()}); `pifleet service uninstall` removes it.
[Unit]
Description=pifleet master (dashboard, REST API, CoAP endpoint, Huey consumer)
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User={user}
# the boards' serial ports (/dev/ttyUSB*, /dev/ttyACM*) belong to this group
SupplementaryGroups={SERIAL_GROUP}
# Every page and API call needs a login, but the master speaks plain HTTP: it listens on loopback; reach it by
# `ssh -L 8080:localhost:8080 THE-PI`, or put a TLS proxy in front of it for the LAN.
ExecStart={" ".join(_quoted(arg) for arg in command)}
WorkingDirectory={str(data_dir).replace("%", "%%")}
Environment=PYTHONUNBUFFERED=1
# the embedded PostgreSQL's lock file and the virtual boards' marks: /run/pifleet, the user's own
RuntimeDirectory=pifleet
Environment=XDG_RUNTIME_DIR=%t/pifleet
Restart=on-failure
RestartSec=5
# stop politely: the master finishes its CoAP exchanges and stops the embedded PostgreSQL
KillSignal=SIGTERM
TimeoutStopSec=30
UMask=0077

# Sandbox: everything read-only but the data directory, nothing to gain, nothing of the kernel to touch.
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ReadWritePaths={_quoted(str(data_dir))}
ProtectHome={home}
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
# no ProtectClock=: older systemd made it imply DeviceAllow=char-rtc, and any DeviceAllow= shuts every other
# device out, the serial ports too (systemd issue 18142); no PrivateDevices= for the same reason
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
# HTTP and CoAP (IPv4/6), PostgreSQL's unix socket, and netlink for the network interfaces (mDNS)
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy={WANTED_BY}
"""


def _version() -> str:
    try:
        return metadata.version("pifleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _account(name: str | None) -> pwd.struct_passwd:
    """The user the master runs as: --user, else whoever called sudo, else this user; never root."""
    name = name or os.environ.get("SUDO_USER") or getpass.getuser()
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise click.ClickException(f"no user {name!r} on this machine (--user NAME)") from None
    if account.pw_uid == 0:
        raise click.ClickException(
            "the master runs as an ordinary user, not root (the embedded PostgreSQL refuses root): "
            "pass --user NAME, e.g. --user pi"
        )
    return account


def _prepare_data_dir(data_dir: Path, account: pwd.struct_passwd) -> None:
    """The data directory must exist before the unit starts (ReadWritePaths=), and belong to the user."""
    if data_dir.is_dir():
        return
    data_dir.mkdir(mode=0o700, parents=True)
    if os.geteuid() == 0:
        os.chown(data_dir, account.pw_uid, account.pw_gid)
        # the directories made above it under the user's home belong to the user too (~/.local, ~/.local/share)
        home = Path(account.pw_dir)
        for parent in data_dir.parents:
            if parent == home or home not in parent.parents:
                break
            if parent.stat().st_uid == 0:
                os.chown(parent, account.pw_uid, account.pw_gid)
    click.echo(f"created the data directory {data_dir}")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    except PermissionError:
        raise click.ClickException(
            f"cannot write {path}: permission denied (run it with sudo, or --unit-dir)"
        ) from None


@click.group()
def service() -> None:
    """The systemd unit that runs `pifleet serve` on this machine (written locally, no master needed)."""


@service.command()
@click.option("--user", "user", metavar="NAME", help="Run the master as NAME (not root). [default: sudo's caller]")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The master's data directory. [default: NAME's ~/.local/share/pifleet]",
)
@click.option("--coap-host", default="0.0.0.0", show_default=True, help="CoAP address the boards reach the master on.")
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=UNIT_DIR,
    show_default=True,
    help="Where the unit file goes.",
)
def install(user: str | None, data_dir: Path | None, coap_host: str, unit_dir: Path) -> None:
    """Write the systemd unit for `pifleet serve` and say how to enable it."""
    account = _account(user)
    data_dir = (data_dir or Path(account.pw_dir) / ".local" / "share" / "pifleet").absolute()
    text = render_unit(account.pw_name, data_dir, coap_host, _executable())
    path = unit_dir / UNIT_NAME
    existed = path.exists()
    _write(path, text)
    _prepare_data_dir(data_dir, account)
    click.echo(f"{'replaced' if existed else 'wrote'} {path}:\n")
    click.echo(text)
    click.echo("enable and start it:")
    click.echo("  sudo systemctl daemon-reload")
    click.echo("  sudo systemctl enable --now pifleet")
    click.echo(
        "then `journalctl -u pifleet -f` shows its log; its first start prints the setup token of the first admin"
    )
    if unit_dir != UNIT_DIR:
        click.echo(f"(systemd reads units from {UNIT_DIR}: copy or link {path} there first)")


@service.command()
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=UNIT_DIR,
    show_default=True,
    help="Where the unit file is.",
)
def uninstall(unit_dir: Path) -> None:
    """Remove the unit written by `pifleet service install`; the data directory stays."""
    path = unit_dir / UNIT_NAME
    if not path.exists():
        raise click.ClickException(f"no {path}: nothing to remove")
    if "pifleet service install" not in path.read_text():
        raise click.ClickException(f"{path} was not written by `pifleet service install`: left as it is")
    if (unit_dir / f"{WANTED_BY}.wants" / UNIT_NAME).exists():  # removing it now would leave systemd a dangling link
        raise click.ClickException("the service is enabled: first `sudo systemctl disable --now pifleet`")
    try:
        path.unlink()
    except PermissionError:
        raise click.ClickException(f"cannot remove {path}: permission denied (run it with sudo)") from None
    click.echo(f"removed {path}; then: sudo systemctl daemon-reload (the data directory stays)")


COMMANDS = [service]
