"""`pifleet repl|exec|ls DEVICE`: a board's MicroPython REPL over its serial port, through mpremote.

DEVICE is a device name or id, a MAC, or a serial port (/dev/ttyUSB0, a virtual board's /dev/pts/N,
socket://HOST:PORT). Names, ids and MACs are looked up in the master's list of USB boards (GET /api/boards),
so this is a REST client like the rest of the CLI; a port path needs no master at all.

Entering the raw REPL interrupts the program the board runs (the agent): `exec` and `ls` use mpremote's
`resume`, so the board is not soft-reset before the command. When mpremote is done — `exec`, `ls`, or leaving
`repl` — the board is handed back to its agent: at the REPL's `>>> ` prompt, Ctrl-D soft-reboots it, which runs
boot.py and main.py, and the board registers again within seconds. A board whose program still runs (you
started it from the REPL) is left as it is.

Layer: CLI adapter; it imports only cli.client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import click
import httpx

from .client import api_options, auth_headers, problem_message

_PORT_PREFIXES = ("/", "socket://", "rfc2217://", "loop://", "COM")


def mpremote_argv() -> list[str]:
    """mpremote from this venv, else from PATH, else as a module of this interpreter."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpremote")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("mpremote")
    return [found] if found else [sys.executable, "-m", "mpremote"]


def resolve_port(url: str, device: str) -> str:
    """The serial port of DEVICE: itself if it is a port, else the USB board the master knows by that name."""
    if device.startswith(_PORT_PREFIXES):
        return device
    try:
        response = httpx.get(url.rstrip("/") + "/api/boards", timeout=30, headers=auth_headers(url))
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"cannot reach the master at {url} to find {device!r}: {exc}; "
            "pass the serial port itself (e.g. /dev/ttyUSB0)"
        ) from None
    if response.status_code == 404:
        raise click.ClickException("this master lists no USB boards (GET /api/boards); pass the serial port itself")
    if response.status_code >= 400:
        raise click.ClickException(f"GET /api/boards: {problem_message(response)}")
    wanted = device.lower()
    for board in response.json():
        probe = board.get("probe") or {}
        names = {board.get("port"), board.get("device_id"), board.get("device_name"), probe.get("mac")}
        if wanted in {str(n).lower() for n in names if n}:
            return board["port"]
    raise click.ClickException(
        f"no board {device!r} on the master's USB ports; `pifleet boards` lists them, or pass the serial port itself"
    )


def back_to_agent(port: str, wait_s: float = 3.0) -> bool:
    """Soft-reboot the board on `port` into its agent if it sits at the REPL prompt; whether it did."""
    import serial  # pyserial, as mpremote and esptool use it

    try:
        with serial.serial_for_url(port, baudrate=115200, timeout=0.1) as link:
            link.write(b"\r\x02")  # Ctrl-B: out of the raw REPL (if still there) to a fresh friendly prompt
            seen, deadline = b"", time.monotonic() + wait_s
            while not seen.endswith(b">>> ") and time.monotonic() < deadline:
                seen = (seen + link.read(256))[-64:]
            if not seen.endswith(b">>> "):
                return False  # its program runs (or it does not answer): nothing to restart
            link.write(b"\x04")  # Ctrl-D at the prompt: soft reboot, boot.py then main.py — the agent
            link.flush()
            return True
    except (OSError, serial.SerialException):
        return False


def _run(port: str, *command: str) -> None:
    argv = [*mpremote_argv(), "connect", port, *command]
    try:
        code = subprocess.run(argv).returncode
    except KeyboardInterrupt:
        code = 130
    if not back_to_agent(port):
        click.echo(f"{port}: the board is not at its REPL prompt; if its agent does not run, reset it", err=True)
    if code:
        sys.exit(code)


@click.command()
@api_options
@click.argument("device")
def repl(url, device) -> None:
    """Open the MicroPython REPL of DEVICE (Ctrl-] leaves)."""
    port = resolve_port(url, device)
    _run(port, "repl")


@click.command("exec")
@api_options
@click.argument("device")
@click.argument("code")
def exec_(url, device, code) -> None:
    """Run CODE on DEVICE and print what it prints (mpremote exec)."""
    _run(resolve_port(url, device), "resume", "exec", code)


@click.command("ls")
@api_options
@click.argument("device")
@click.argument("path", default="")
def ls(url, device, path) -> None:
    """List files on DEVICE (mpremote fs ls)."""
    _run(resolve_port(url, device), "resume", "fs", "ls", *([":" + path.lstrip(":")] if path else []))


COMMANDS = [repl, exec_, ls]
