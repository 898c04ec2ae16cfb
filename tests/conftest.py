"""Shared test fixtures: a real PostgreSQL (embedded, or DATABASE_URL), masters as real processes, helpers.

Tests drive the system as a user would: `pifleet serve` in a subprocess, its REST API over HTTP, virtual boards
running the real MicroPython interpreter.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.masters import MasterProcess


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
