"""Stand-ins for in-process tests of the jobs area: a clock the test moves, a queue that records what Huey would
have been told, a board link that answers as the test says, and a fresh database per test module (real
PostgreSQL, migrated) — no spawned master, no Huey consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pifleet.errors import BoardError


class FakeClock:
    """now() for the planner and the job service; moves only when the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at


class RecordingQueue:
    """Takes the place of the Huey schedule: what was handed over, and for when."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[uuid.UUID, int, datetime]] = []

    async def schedule(self, execution_id: uuid.UUID, attempt: int, eta: datetime) -> None:
        self.scheduled.append((execution_id, attempt, eta))

    async def schedule_many(self, runs: list[tuple[uuid.UUID, int, datetime]]) -> None:
        self.scheduled.extend(runs)

    async def replace_all(self, runs: list[tuple[uuid.UUID, int, datetime]]) -> None:
        self.scheduled = list(runs)

    def when(self, execution_id: uuid.UUID) -> list[datetime]:
        return [eta for eid, _, eta in self.scheduled if eid == execution_id]


Answer = dict[str, Any] | BoardError | Callable[[dict[str, Any]], dict[str, Any]]


class FakeLink:
    """A BoardLink (pifleet.fleet.link) whose boards answer with what the test set per device: a result, a
    function of the parameters, or an error to raise."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.default: Answer = {"ok": True}
        self.commands: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self.gates: dict[str, asyncio.Event] = {}  # a board that answers only once the test opens its gate

    def answer(self, device_id: str, *answers: Answer) -> None:
        self.answers.setdefault(device_id, []).extend(answers)

    def bind(self, device_id: str, address: str, port: int) -> None:
        pass

    async def capabilities(self, address: str, port: int) -> dict[str, Any]:
        return {"caps": []}

    async def command(
        self, device_id, address, port, capability, command, eid, params, timeout, due=None
    ) -> dict[str, Any]:
        self.commands.append((device_id, capability, command, eid, params))
        if device_id in self.gates:
            await self.gates[device_id].wait()
        queued = self.answers.get(device_id)
        answer = queued.pop(0) if queued else self.default
        if isinstance(answer, BoardError):
            raise answer
        return answer(params) if callable(answer) else answer

    async def modules(self, address: str, port: int) -> dict[str, Any]:
        return {"modules": {}, "free": 0}

    async def stats(self, address: str, port: int) -> dict[str, Any]:
        return {}

    async def put_module(self, address, port, stem, sha256, data) -> dict[str, Any]:
        return {}

    async def put_role(self, address, port, body) -> dict[str, Any]:
        return {}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 26, 19, 0, tzinfo=UTC))  # 20:00 in Berlin


@pytest.fixture(scope="module")
async def pool(pg_url):
    """A fresh, migrated database for the test module."""
    from pifleet.storage import migrations, postgres

    pool = await postgres.create_pool(postgres.with_database(pg_url, f"u_{uuid.uuid4().hex[:12]}"))
    await migrations.migrate(pool)
    yield pool
    await pool.close()
