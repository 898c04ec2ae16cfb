"""Where this machine's pifleet processes meet: the runtime directory (docs/flashing.md), and whether a process
that left its mark there still lives; a free loopback port; a service's fire-and-forget tasks; how the master's
allocator hands back big buffers. Imported by the
sim, the flashing watch, the CLI, module sync and rollouts."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from pathlib import Path


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/pifleet, or /tmp/pifleet-run-UID/pifleet."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path(tempfile.gettempdir()) / f"pifleet-run-{os.getuid()}")
    return Path(base) / "pifleet"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


MMAP_THRESHOLD = 128 * 1024  # glibc's initial threshold, made fixed


def big_buffers_mapped(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make every allocation from `threshold` bytes up its own mapping, given back to the system when freed
    (glibc's mallopt(M_MMAP_THRESHOLD); elsewhere nothing happens, False).

    Why: glibc raises the threshold to the size of each mapped block freed, so after the first flash a board's
    image, bundle and their compressed copies (megabytes each, built in worker threads) come from the threads'
    heaps and stay with the process: flashing four boards at once lifted a master from 91 to 198 MB over twelve
    boards, against 95 MB with the threshold fixed (tools/bench/fleet_scale.py, docs/operations.md)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: its own allocator's rules
        return False
    return bool(mallopt(-3, threshold))  # M_MMAP_THRESHOLD; 1 on success


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the OS says is free on `host` now (for a virtual board's or a benchmark's own endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Background:
    """A service's fire-and-forget tasks: referenced until they end (the loop keeps only weak references), a
    failure logged with its traceback as `what failed`, and all of them cancelled and awaited by `stop()`."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log, self._what = log, what
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s failed", self._what, exc_info=task.exception())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
