"""Where this machine's pifleet processes meet: the runtime directory (docs/flashing.md), and whether a process
that left its mark there still lives. No I/O beyond that; imported by the sim, the flashing watch, the CLI."""

from __future__ import annotations

import os
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
