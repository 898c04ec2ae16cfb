"""The device registry in-process: a real PostgreSQL (fresh per module, migrated), boards behind a fake BoardLink.

What a user would notice: the device list (online, address, capabilities, readings), and what the registry asks
the boards. Also home of FakeBoards, the in-memory BoardLink that test_sync.py and test_pairing.py use too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pifleet.devices import registry as registry_module
from pifleet.devices import state as live
from pifleet.devices.registry import Registry
from pifleet.errors import BoardError, BoardTimeoutError, BoardUnreachableError, InvalidError
from pifleet.events import EventHub
from pifleet.storage import devices as devices_q

BLIND = {"name": "blind", "version": "1", "commands": {"move": {"seconds": {"type": "number"}}, "stop": {}}}


class FakeBoard:
    """One board as the link sees it: what /cap describes, its module files, the role it runs."""

    def __init__(self, device_id: str, caps: list[dict[str, Any]]) -> None:
        self.device_id = device_id
        self.caps = caps
        self.role: str | None = None
        self.files: dict[str, bytes] = {}  # stem -> .mpy
        self.failed: list[dict[str, str]] = []
        self.refuse: dict[str, BoardError] = {}  # stem -> what PUT /m/STEM raises
        self.silent = False


class FakeBoards:
    """A BoardLink and a BoardKeys (pifleet.devices.link) over boards kept in memory, one per address:port."""

    def __init__(self) -> None:
        self.boards: dict[tuple[str, int], FakeBoard] = {}
        self.bound: dict[str, tuple[str, int]] = {}
        self.keys: dict[str, tuple[bytes, bytes]] = {}  # device id -> (OSCORE id, secret)
        self.pushed: list[tuple[str, str]] = []  # (device id, stem), in order
        self.switched: list[tuple[str, dict[str, Any]]] = []  # (device id, PUT /role body)
        self.asked: list[tuple[str, str]] = []  # (what, device id)

    def add(self, device_id: str, address: str, port: int = 5683, caps: list[dict] | None = None) -> FakeBoard:
        board = FakeBoard(device_id, caps if caps is not None else [BLIND])
        self.boards[(address, port)] = board
        return board

    def _at(self, address: str, port: int, what: str) -> FakeBoard:
        board = self.boards.get((address, port))
        if board is None or board.silent:
            raise BoardUnreachableError(f"no answer from {address}:{port}")
        self.asked.append((what, board.device_id))
        return board

    # BoardKeys
    def pair(self, device_id: str, oscore_id: bytes, secret: bytes, address: str | None, port: int | None) -> None:
        self.keys[device_id] = (oscore_id, secret)

    def unpair(self, device_id: str) -> None:
        self.keys.pop(device_id, None)

    # BoardLink
    def bind(self, device_id: str, address: str, port: int) -> None:
        self.bound[device_id] = (address, port)

    async def capabilities(self, address: str, port: int) -> dict[str, Any]:
        board = self._at(address, port, "cap")
        return {"device": board.device_id, "role": board.role, "caps": board.caps, "failed": board.failed}

    async def command(self, device_id, address, port, capability, command, eid, params, timeout) -> dict[str, Any]:
        self._at(address, port, f"{capability}/{command}")
        return {"ok": True}

    async def modules(self, address: str, port: int) -> dict[str, Any]:
        board = self._at(address, port, "m")
        return {"modules": {stem: len(data) for stem, data in board.files.items()}, "free": 100_000}

    async def stats(self, address: str, port: int) -> dict[str, Any]:
        self._at(address, port, "stats")
        return {"mem_free": 50_000}

    async def put_module(self, address: str, port: int, stem: str, sha256: str, data: bytes) -> dict[str, Any]:
        board = self._at(address, port, "put_module")
        if stem in board.refuse:
            raise board.refuse[stem]
        board.files[stem] = data
        self.pushed.append((board.device_id, stem))
        return {"stem": stem, "size": len(data)}

    async def put_role(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        board = self._at(address, port, "put_role")
        for cap, stem in body["modules"].items():
            if stem not in board.files:
                raise BoardError(f"{stem} is not on the board", field=f"modules.{cap}")
        board.role = body["role"]
        board.caps = [
            {"name": cap, "version": "1", "commands": {"on": {}, "off": {}}, "module": stem}
            for cap, stem in body["modules"].items()
        ]
        self.switched.append((board.device_id, body))
        return {"device": board.device_id, "role": board.role, "caps": board.caps, "failed": []}


def registration(ep: str, address: str, **kw: Any) -> dict[str, Any]:
    return {
        "ep": ep,
        "lifetime_s": 60,
        "kind": "pifleet.esp32",
        "name": None,
        "role": None,
        "mpy": None,
        "firmware": "v1.29.0",
        "agent_version": "1",
        "links": "</a/blind>",
        "address": address,
        "port": 5683,
    } | kw


async def settled(registry: Registry) -> None:
    """Until the capability reads the registry started on its own have finished."""
    while pending := [task for task in registry._tasks if not task.done()]:
        await asyncio.gather(*pending)


@pytest.fixture
def boards() -> FakeBoards:
    return FakeBoards()


@pytest.fixture
def described() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def registry(pool, boards, described) -> Registry:
    async def on_described(device_id: str, what: dict[str, Any]) -> None:
        described.append((device_id, what))

    return Registry(pool, EventHub(), boards, described=on_described)


async def test_a_described_board_is_registered_with_its_capabilities(pool, registry, boards, described):
    boards.add("r-blind-1", "127.0.1.1")
    rid = await registry.register(**registration("r-blind-1", "127.0.1.1", name="hall-blind", role="blind"))
    await settled(registry)
    device = await devices_q.get_by_name(pool, "hall-blind")
    assert device is not None and device.id == "r-blind-1" and device.online and device.role == "blind"
    assert (device.address, device.port) == ("127.0.1.1", 5683)
    assert [(c.name, sorted(c.commands)) for c in device.capabilities] == [("blind", ["move", "stop"])]
    assert await registry.owner(rid) == "r-blind-1"
    assert boards.bound["r-blind-1"] == ("127.0.1.1", 5683)
    assert [d for d, _ in described] == ["r-blind-1"]


async def test_a_board_that_does_not_answer_its_cap_is_registered_without_capabilities(pool, registry, described):
    await registry.register(**registration("r-silent", "127.0.1.2"))  # nothing answers at that address
    await settled(registry)
    device = await devices_q.get_by_id(pool, "r-silent")
    assert device is not None and device.online and device.capabilities == []
    assert described == []  # the role sync is not asked about a board it knows nothing of


async def test_a_capability_read_that_timed_out_is_tried_again_while_the_registration_stands(
    pool, registry, boards, described, monkeypatch
):
    # over a lossy link GET /cap can go unanswered (4 transmissions in its 30 s): the board stays registered, and
    # without its capabilities no job could use it until it registered anew
    monkeypatch.setattr(registry_module, "CAPS_RETRY_S", (0.01, 0.02))
    lossy = boards.add("r-lossy", "127.0.1.3")
    capabilities, timeouts = boards.capabilities, []

    async def lost_twice(address: str, port: int) -> dict[str, Any]:
        if len(timeouts) < 2 or lossy.silent:
            timeouts.append(address)
            raise BoardTimeoutError("no answer from the board within 30 s")
        return await capabilities(address, port)

    monkeypatch.setattr(boards, "capabilities", lost_twice)
    await registry.register(**registration("r-lossy", "127.0.1.3"))
    await settled(registry)
    device = await devices_q.get_by_id(pool, "r-lossy")
    assert len(timeouts) == 2 and [c.name for c in device.capabilities] == ["blind"]
    assert [d for d, _ in described] == ["r-lossy"]
    # a read for a registration that has ended (the board registered anew, or left) is not tried again
    lossy.silent = True  # from now on every read times out
    rid = await registry.register(**registration("r-lossy", "127.0.1.3"))
    assert await registry.remove(rid)
    await asyncio.wait_for(settled(registry), 5)


async def test_a_name_taken_by_another_board_gets_the_id_appended(pool, registry, boards):
    boards.add("r-a", "127.0.1.3")
    boards.add("r-b", "127.0.1.4")
    await registry.register(**registration("r-a", "127.0.1.3", name="porch"))
    await registry.register(**registration("r-b", "127.0.1.4", name="porch"))
    await settled(registry)
    assert (await devices_q.get_by_id(pool, "r-a")).name == "porch"
    assert (await devices_q.get_by_id(pool, "r-b")).name == "porch-r-b"


async def test_a_heartbeat_moves_the_board_and_an_unknown_registration_is_refused(pool, registry, boards):
    boards.add("r-moves", "127.0.1.5")
    rid = await registry.register(**registration("r-moves", "127.0.1.5"))
    await settled(registry)
    assert await registry.update(rid, 120, "127.0.1.6", 5684)
    device = await devices_q.get_by_id(pool, "r-moves")
    assert (device.address, device.port, device.online) == ("127.0.1.6", 5684, True)
    assert boards.bound["r-moves"] == ("127.0.1.6", 5684)
    assert not await registry.update("no-such-registration", None, "127.0.1.6", 5684)


async def test_new_links_after_a_switch_in_place_update_the_registration_and_need_no_second_read(
    pool, registry, boards, described
):
    # a board that switched its role without a restart updates its registration with its new links (RFC 9176
    # §5.3); its answer to the switch said what it runs now, so the master reads no /cap, and its plan stands
    board = boards.add("r-switch", "127.0.1.8")
    rid = await registry.register(**registration("r-switch", "127.0.1.8", role="blind", safe_mode="boot failed"))
    await settled(registry)
    asked = len(boards.asked)
    board.files["relay_ab"] = b"M"
    switch = {"role": "porch", "caps": {"light": {}}, "modules": {"light": "relay_ab"}}
    registry.switched("r-switch", await boards.put_role("127.0.1.8", 5683, switch))
    links = '</cap>;ct=50,</stats>;ct=50,</a/light/on>;rt="pifleet.cmd";ct=50,</a/light/off>;rt="pifleet.cmd";ct=50'
    assert await registry.relink(rid, "r-switch", links, "porch", None, "127.0.1.9", 5683)
    await settled(registry)
    assert boards.asked[asked:] == [("put_role", "r-switch")]  # no GET /cap
    assert [d for d, _ in described] == ["r-switch"]  # no second role sync or plan: only the registration's
    device = await devices_q.get_by_id(pool, "r-switch")
    assert device.online and device.safe_mode is None  # a role runs: safe mode ended
    assert device.role == "blind"  # as a registration: the role the master has wins over the board's
    assert (device.address, boards.bound["r-switch"]) == ("127.0.1.9", ("127.0.1.9", 5683))
    assert await pool.fetchval("select links from devices where id = $1", "r-switch") == links
    assert await registry.owner(rid) == "r-switch"  # the same registration

    # links its last switch's answer did not say (that answer was lost, or came to another master): read again
    board.caps = [{"name": "light", "version": "2", "commands": {"on": {}, "off": {}, "toggle": {}}}]
    boards.boards[("127.0.1.9", 5683)] = board
    assert await registry.relink(rid, "r-switch", links + ",</a/light/toggle>;ct=50", "porch", None, "127.0.1.9", 5683)
    await settled(registry)
    assert boards.asked[-1] == ("cap", "r-switch") and [d for d, _ in described] == ["r-switch", "r-switch"]
    device = await devices_q.get_by_id(pool, "r-switch")
    assert [(c.name, c.version, sorted(c.commands)) for c in device.capabilities] == [
        ("light", "2", ["off", "on", "toggle"])
    ]
    # another board's registration is not this one's to update
    assert not await registry.relink(rid, "r-blind-1", links, None, None, "127.0.1.9", 5683)
    # a board without a role yet takes the one it names, stored as a role
    boards.add("r-roleless", "127.0.1.10")
    rid = await registry.register(**registration("r-roleless", "127.0.1.10"))
    assert await registry.relink(rid, "r-roleless", links, "greenhouse", None, "127.0.1.10", 5683)
    assert (await devices_q.get_by_id(pool, "r-roleless")).role == "greenhouse"


async def test_deregistering_marks_the_board_offline(pool, registry, boards):
    boards.add("r-leaves", "127.0.1.7")
    rid = await registry.register(**registration("r-leaves", "127.0.1.7"))
    await settled(registry)
    assert await registry.remove(rid)
    device = await devices_q.get_by_id(pool, "r-leaves")
    assert not device.online and device.last_seen is not None  # when it was last seen stays
    assert not await registry.remove(rid)  # once


async def test_an_unreachable_board_is_offline_until_it_is_heard_again(pool, registry, boards):
    boards.add("r-flaky", "127.0.1.8")
    rid = await registry.register(**registration("r-flaky", "127.0.1.8"))
    await settled(registry)
    await registry.mark_unreachable("r-flaky", "no answer to blind/move")
    device = await devices_q.get_by_id(pool, "r-flaky")
    assert not device.online and device.unreachable == "no answer to blind/move"
    assert (await devices_q.online_map(pool))["r-flaky"] is False
    await registry.update(rid, None, "127.0.1.8", 5683)  # its next heartbeat
    device = await devices_q.get_by_id(pool, "r-flaky")
    assert device.online and device.unreachable is None


async def test_a_board_heard_since_the_failed_request_went_out_is_not_marked_unreachable(pool, registry, boards):
    # a board that restarted refuses the master's retransmission of a request from before (OSCORE replay): it is
    # not unreachable when it registered again after the request went out
    boards.add("r-restarted", "127.0.1.10")
    rid = await registry.register(**registration("r-restarted", "127.0.1.10"))
    await settled(registry)
    sent_when_seen = (await devices_q.get_by_id(pool, "r-restarted")).last_seen
    await registry.update(rid, None, "127.0.1.10", 5683)  # heard after the request went out
    await registry.mark_unreachable("r-restarted", "the board refused the request", sent_when_seen)
    assert (await devices_q.get_by_id(pool, "r-restarted")).online
    # not heard since: marked
    heard = (await devices_q.get_by_id(pool, "r-restarted")).last_seen
    await registry.mark_unreachable("r-restarted", "no answer to blind/move", heard)
    device = await devices_q.get_by_id(pool, "r-restarted")
    assert not device.online and device.unreachable == "no answer to blind/move"


async def test_a_lapsed_lifetime_is_offline(pool, registry, boards):
    boards.add("r-lapsed", "127.0.1.9")
    await registry.register(**registration("r-lapsed", "127.0.1.9", lifetime_s=5))
    await settled(registry)
    await pool.execute("update devices set last_seen = now() - interval '6 seconds' where id = 'r-lapsed'")
    assert not (await devices_q.get_by_id(pool, "r-lapsed")).online


async def test_telemetry_stores_numbers_from_the_board_at_its_address(pool, registry, boards):
    boards.add("r-temp", "127.0.1.10", caps=[{"name": "temperature", "version": "1", "commands": {"read": {}}}])
    await registry.register(**registration("r-temp", "127.0.1.10", name="balcony"))
    await settled(registry)
    assert await registry.telemetry("r-temp", "127.0.1.10", "temperature", {"c": 21.5, "ok": True, "s": "x"}) is None
    readings = await devices_q.readings(pool, "balcony")
    assert sorted((r.path, r.value) for r in readings) == [("c", 21.5), ("ok", 1.0)]
    refused = await registry.telemetry("r-temp", "127.0.9.9", "temperature", {"c": 99})
    assert refused == "board r-temp is registered from 127.0.1.10, not 127.0.9.9"
    assert await registry.telemetry("nobody", "127.0.1.10", "temperature", {"c": 1}) == "unknown board 'nobody'"
    with pytest.raises(InvalidError):
        await registry.telemetry("r-temp", "127.0.1.10", "temperature", {"c\x00": 1})


async def test_state_reports_keep_the_newest_values_and_a_sensors_state_is_its_telemetry(pool, registry, boards):
    boards.add("r-blind", "127.0.1.11", caps=[{"name": "blind", "version": "3", "commands": {"stop": {}}}])
    await registry.register(**registration("r-blind", "127.0.1.11", name="state-blind"))
    await settled(registry)
    states = registry.states
    with registry.hub.subscribe() as stream:
        assert await states.report("r-blind", "127.0.1.11", "blind", {"position": 40, "moving": "down"}) is None
        assert await states.report("r-blind", "127.0.1.11", "blind", {"position": 30}) is None  # merged
        notices = [await stream.next(1) for _ in range(3)]
    state_notices = [json.loads(n[1]) for n in notices if n and n[0] == "state"]
    assert [n["values"]["position"] for n in state_notices] == [40, 30] and state_notices[0]["device"] == "state-blind"
    got = await live.of_device(pool, "r-blind")
    assert got["blind"].values == {"position": 30, "moving": "down"}
    positions = [r.value for r in await devices_q.readings(pool, "state-blind") if r.path == "position"]
    assert sorted(positions) == [30.0, 40.0]  # the numbers have a history, like telemetry
    assert await states.report("r-blind", "127.0.9.9", "blind", {"position": 1}) == (
        "board r-blind is registered from 127.0.1.11, not 127.0.9.9"
    )
    assert await states.report("nobody", "127.0.1.11", "blind", {"position": 1}) == "unknown board 'nobody'"
    with pytest.raises(InvalidError):
        await states.report("r-blind", "127.0.1.11", "blind", {f"v{i}": i for i in range(40)})
    # a capability without STATE: its last telemetry is its state
    assert await registry.telemetry("r-blind", "127.0.1.11", "temperature", {"celsius": 21.5}) is None
    assert (await live.of_device(pool, "r-blind"))["temperature"].values == {"celsius": 21.5}


async def test_telemetry_arriving_together_is_one_batch_with_each_capabilitys_last_state(pool, registry, boards):
    for i, ep in enumerate(("r-t1", "r-t2"), start=1):
        boards.add(ep, f"127.0.1.{20 + i}", caps=[{"name": "climate", "version": "1", "commands": {"read": {}}}])
        await registry.register(**registration(ep, f"127.0.1.{20 + i}", name=f"batch-{ep}"))
    await settled(registry)
    batches = registry._reports.batches
    with registry.hub.subscribe() as stream:
        outcomes = await asyncio.gather(
            registry.telemetry("r-t1", "127.0.1.21", "climate", {"c": 20.0, "rh": 40}),
            registry.telemetry("r-t1", "127.0.1.21", "climate", {"c": 21.0}),  # merged over the first
            registry.telemetry("r-t2", "127.0.1.22", "climate", {"c": 5.0}),
            registry.telemetry("r-t2", "127.0.9.9", "climate", {"c": 99.0}),  # another address: refused alone
            registry.telemetry("r-t1", "127.0.1.21", "climate", {"note": "a\x00b"}),  # cannot be stored
            return_exceptions=True,
        )
        notices = []
        while (notice := await stream.next(0.1)) is not None:  # all were published before the answers
            notices.append(notice)
    assert outcomes[:4] == [None, None, None, "board r-t2 is registered from 127.0.1.22, not 127.0.9.9"]
    assert isinstance(outcomes[4], InvalidError) and outcomes[4].field == "values"
    assert registry._reports.batches == batches + 1  # the four stored together
    assert (await live.of_device(pool, "r-t1"))["climate"].values == {"c": 21.0, "rh": 40}
    assert (await live.of_device(pool, "r-t2"))["climate"].values == {"c": 5.0}
    states = sorted((n["device"], n["values"]) for n in (json.loads(b) for kind, b in notices if kind == "state"))
    assert states == [("batch-r-t1", {"c": 21.0, "rh": 40}), ("batch-r-t2", {"c": 5.0})]
    readings = await devices_q.readings(pool, "batch-r-t1")
    assert sorted((r.path, r.value) for r in readings) == [("c", 20.0), ("c", 21.0), ("rh", 40.0)]
