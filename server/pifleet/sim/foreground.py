"""Running a virtual board or a process target in the foreground of a terminal: follow its console until Ctrl-C
or SIGTERM, then stop it in order (the agent switches outputs off and deregisters). Used by `pifleet sim start`
and `pifleet process start`."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import click


def console_offset(console: Path) -> int:
    """Where this run's console output starts (earlier runs' output is not repeated)."""
    return console.stat().st_size if console.exists() else 0


def follow(console: Path, offset: int, running: Callable[[], bool], stop: Callable[[], int | None]) -> bool:
    """Echo the console while `running()`; stop on Ctrl-C or SIGTERM. Returns whether the stop was asked for
    (rather than the thing ending by itself), and the exit code of `stop()` as the second element."""
    asked: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))
    try:
        while running() and not asked:
            offset = _echo_new(console, offset)
            time.sleep(0.1)
    except KeyboardInterrupt:
        asked.append(signal.SIGINT)
    finally:
        code = stop()
        _echo_new(console, offset)
        signal.signal(signal.SIGTERM, previous)
    return bool(asked), code


def _echo_new(path: Path, offset: int) -> int:
    """Echo what the console got since offset; return the new offset."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        click.echo(data.decode(errors="replace"), nl=False)
    return offset + len(data)
