"""Where this machine's pifleet processes meet: the runtime directory (docs/flashing.md), and whether a process
that left its mark there still lives; a free loopback port. Imported by the sim, the flashing watch, the CLI."""

from __future__ import annotations

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


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the OS says is free on `host` now (for a virtual board's or a benchmark's own endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
