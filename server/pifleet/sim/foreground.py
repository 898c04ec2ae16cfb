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


class Foreground:
    """Create it before starting the thing: from then on SIGTERM (and Ctrl-C) mean "stop in order", even if
    they arrive before the console is followed — a script may read the first line and stop at once."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.asked.append(signum))

    def follow(
        self, console: Path, offset: int, running: Callable[[], bool], stop: Callable[[], int | None]
    ) -> tuple[bool, int | None]:
        """Echo the console while `running()` and no stop was asked; then `stop()`. Returns whether the stop
        was asked for (rather than the thing ending by itself) and the exit code of `stop()`."""
        try:
            while running() and not self.asked:
                offset = _echo_new(console, offset)
                time.sleep(0.1)
        except KeyboardInterrupt:
            self.asked.append(signal.SIGINT)
        finally:
            code = stop()
            _echo_new(console, offset)
            signal.signal(signal.SIGTERM, self._previous)
        return bool(self.asked), code


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
