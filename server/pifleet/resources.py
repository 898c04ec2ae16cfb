"""The one resolver for pifleet's data files: migrations, dashboard, board agent, capability modules.

Layer: none (stdlib only; any part may import it). Nothing else in pifleet finds a data file by walking up
from its own `__file__`.

Each data directory is looked up in two places, in this order:
1. inside the installed package, as `pifleet/_data/NAME` (importlib.resources) — where a wheel ships them;
2. the source checkout the package was imported from (`server/pifleet` → the repository's top level), where
   they live today and where an editable install finds them.
Shipping them in the wheel therefore needs only packaging (copy sql/, dashboard/, micropython/ and
capabilities/ to pifleet/_data/ at build time); no caller changes.

The directories are returned as `Path`s: their users hand them to subprocesses (MICROPYPATH, PYTHONPATH),
to shutil, and to Litestar's static files, which all need a real directory. A package imported from a zip
has none: that is refused with a clear error rather than worked around.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from pathlib import Path

PACKAGE_DATA = "_data"  # pifleet/_data/NAME in an installed wheel

SQL = "sql"  # numbered migrations
DASHBOARD = "dashboard"  # templates/ and static/
AGENT = "micropython"  # the board agent: boot.py, main.py, agent/, host/ (CPython edge), shims/ (unix port)
CAPABILITIES = "capabilities"  # board/: role modules, as shipped; host/: CPython-only ones of process targets


class ResourceMissingError(FileNotFoundError):
    """A data directory that is neither in the installed package nor in a source checkout."""


def sql() -> Path:
    """sql/: the numbered migrations (NNNN_name.sql)."""
    return find(SQL)


def dashboard() -> Path:
    """dashboard/: templates/ and static/ of the web pages."""
    return find(DASHBOARD)


def agent() -> Path:
    """micropython/: the board agent (boot.py, main.py, agent/), its CPython edge (host/) and the unix-port
    shims (shims/)."""
    return find(AGENT)


def capabilities() -> Path:
    """capabilities/board/: the shipped role modules, MicroPython (one NAME.py per capability)."""
    return find(CAPABILITIES) / "board"


def host_capabilities() -> Path:
    """capabilities/host/: the CPython-only capabilities of process targets (db, python) and their helpers."""
    return find(CAPABILITIES) / "host"


def agent_version() -> str:
    """The board agent's version (VERSION in micropython/agent/__init__.py, what a board reports when it
    registers), read from the file: importing the agent package here would mix the board's code into the master."""
    found = re.search(r"^VERSION\s*=\s*[\"']([^\"']+)[\"']", (agent() / "agent" / "__init__.py").read_text(), re.M)
    return found.group(1) if found else "unknown"


@cache
def find(name: str) -> Path:
    """The directory NAME: packaged data first, then the source checkout."""
    package = files("pifleet")
    if not isinstance(package, Path):
        raise ResourceMissingError(f"pifleet is not installed as files ({package!r}): its {name}/ cannot be used")
    packaged = package / PACKAGE_DATA / name
    if packaged.is_dir():
        return packaged
    checkout = package.resolve().parent.parent / name  # server/pifleet -> the repository's top level
    if checkout.is_dir():
        return checkout
    raise ResourceMissingError(
        f"pifleet's {name}/ is neither in the installed package ({packaged}) nor in a source checkout ({checkout})"
    )
