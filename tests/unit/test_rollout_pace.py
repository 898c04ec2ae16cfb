"""A rollout to many boards: the first board alone, then a few at once, one more for every board that comes
through, so a big fleet is updated many boards at a time; a failure early on leaves the boards not yet started
with their version (modules/rollouts.py)."""

from __future__ import annotations

import asyncio

from pifleet.errors import BoardError
from pifleet.modules import rollouts
from tests.unit.test_sync import Fleet, fleet  # noqa: F401 — the services over fake boards

BOARDS = 30


class Pushes:
    """Wraps the fake boards' put_module: each push takes a while; how many are under way at once, over time."""

    def __init__(self, fleet: Fleet) -> None:  # noqa: F811
        self.now = self.finished = 0
        self.at_once: list[tuple[int, int]] = []  # as each push starts: how many are under way, how many finished
        inner = fleet.boards.put_module

        async def put_module(address, port, stem, sha256, data):
            self.now += 1
            self.at_once.append((self.now, self.finished))
            try:
                await asyncio.sleep(0.2)  # longer than what the sync around it does
                return await inner(address, port, stem, sha256, data)
            finally:
                self.now -= 1
                self.finished += 1

        fleet.boards.put_module = put_module


async def boards_in_sync(fleet: Fleet, role: str, module: str):  # noqa: F811
    await fleet.upload(module, "1")
    await fleet.role(role, module)
    names = [f"p-{role}-{i:02d}" for i in range(BOARDS)]
    boards = [await fleet.board(name, role) for name in names]
    for name in names:
        assert await fleet.sync.sync(name) == "in_sync"
    return names, boards


async def test_after_the_first_board_a_few_go_at_once_then_more_as_they_come_through(fleet):  # noqa: F811
    names, _ = await boards_in_sync(fleet, "hall", "lamp")
    pushes = Pushes(fleet)
    rollout = await fleet.finished(await fleet.rollouts.start(await fleet.upload("lamp", "2")))
    assert rollout.state == "succeeded" and sorted(rollout.done) == names
    assert pushes.at_once[0] == (1, 0) and pushes.at_once[1][1] == 1  # the first board alone
    # then a few at once, until one of those came through
    assert max(now for now, finished in pushes.at_once if finished == 1) <= rollouts._FIRST
    assert max(now for now, _ in pushes.at_once) > rollouts._FIRST  # and more as they come through


async def test_a_failure_in_the_first_few_leaves_the_boards_not_started_as_they_were(fleet):  # noqa: F811
    names, boards = await boards_in_sync(fleet, "porch", "bulb")
    v2 = await fleet.upload("bulb", "2")
    boards[1].refuse[v2.stem] = BoardError("flash is full", field="size")  # the second board: in the first few
    Pushes(fleet)
    rollout = await fleet.finished(await fleet.rollouts.start(v2))
    assert rollout.state == "halted" and rollout.failed == names[1] and "flash is full" in rollout.reason
    untouched = [b for b in boards if v2.stem not in b.files]
    assert len(untouched) >= BOARDS - 1 - rollouts._FIRST  # never started: they keep version 1
