"""The master's ingest path written in batches (storage/batch.py behind devices/registry.py): many boards' telemetry
and heartbeats at once, on a real PostgreSQL, boards behind the fake BoardLink of test_registry.py.

What a user would notice: every report stored with its own answer (refusals only for what is wrong), nothing lost
when the master stops while reports wait in the buffer, one bad request failing alone, a heartbeat counted only
for the board that owns the registration.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pifleet.devices.registry import Registry
from pifleet.events import EventHub
from pifleet.storage import devices as devices_q
from tests.unit.test_registry import FakeBoards, registration, settled

CLIMATE = [{"name": "climate", "version": "1", "commands": {"read": {}}}]


async def readings_of(pool, device_id: str) -> int:
    return await pool.fetchval("select count(*) from readings where device_id = $1", device_id)


async def fleet(pool, prefix: str, count: int) -> tuple[Registry, list[str], dict[str, str]]:
    """`count` registered boards at 127.0.3.N; the registry, their ids and their registration ids."""
    boards = FakeBoards()
    registry = Registry(pool, EventHub(), boards)
    ids, rids = [], {}
    for n in range(count):
        device_id, address = f"{prefix}-{n}", f"127.0.3.{n + 1}"
        boards.add(device_id, address, caps=CLIMATE)
        rids[device_id] = await registry.register(**registration(device_id, address))
        ids.append(device_id)
    await settled(registry)
    return registry, ids, rids


async def test_many_reports_at_once_are_each_stored_with_their_own_answer(pool):
    registry, ids, _ = await fleet(pool, "i-many", 5)
    reports = [
        registry.telemetry(device_id, f"127.0.3.{n + 1}", "climate", {"c": 20 + k, "h": {"rel": 40}})
        for k in range(40)
        for n, device_id in enumerate(ids)
    ]
    wrong = [
        registry.telemetry(ids[0], "127.0.9.9", "climate", {"c": 1}),  # another address
        registry.telemetry("i-many-nobody", "127.0.3.1", "climate", {"c": 1}),
    ]
    outcomes = await asyncio.gather(*reports, *wrong)
    assert outcomes[:200] == [None] * 200
    assert outcomes[200:] == [
        "board i-many-0 is registered from 127.0.3.1, not 127.0.9.9",
        "unknown board 'i-many-nobody'",
    ]
    for device_id in ids:
        assert await readings_of(pool, device_id) == 80  # 40 reports of 2 numbers each
    paths = await pool.fetch("select distinct path from readings where device_id = $1 order by path", ids[0])
    assert [r["path"] for r in paths] == ["c", "h.rel"]
    assert registry._reports.batches < 50  # 202 requests, written together (each batch one statement)
    await registry.close()


async def test_reports_waiting_in_the_buffer_are_written_when_the_master_stops(pool):
    registry, ids, _ = await fleet(pool, "i-stop", 2)
    waiting = [
        asyncio.create_task(registry.telemetry(device_id, f"127.0.3.{n + 1}", "climate", {"c": k}))
        for k in range(30)
        for n, device_id in enumerate(ids)
    ]
    await asyncio.sleep(0)  # every request is in the buffer, none written yet
    for task in waiting:
        task.cancel()  # the gateway stopped: nobody waits for the answers any more
    await asyncio.gather(*waiting, return_exceptions=True)
    await registry.close()
    assert [await readings_of(pool, device_id) for device_id in ids] == [30, 30]
    # after the close, a late report is still written (at once, on its own)
    assert await registry.telemetry(ids[0], "127.0.3.1", "climate", {"c": 99}) is None
    assert await readings_of(pool, ids[0]) == 31


async def test_a_heartbeat_counts_only_for_the_board_that_owns_the_registration(pool):
    registry, ids, rids = await fleet(pool, "i-beat", 3)
    await pool.execute("update devices set last_seen = now() - interval '1 hour' where id = any($1)", ids)
    beats = [
        registry.heartbeat(rids[device_id], device_id, 120, "127.0.4.1", 6000 + n) for n, device_id in enumerate(ids)
    ]
    liar = registry.heartbeat(rids[ids[0]], ids[1], None, "127.0.4.9", 7000)  # another board's registration
    unknown = registry.heartbeat("no-such-registration", ids[2], None, "127.0.4.9", 7000)
    assert await asyncio.gather(*beats, liar, unknown) == [True, True, True, False, False]
    for n, device_id in enumerate(ids):
        device = await devices_q.get_by_id(pool, device_id)
        assert device.online and (device.address, device.port) == ("127.0.4.1", 6000 + n)
    assert (await devices_q.get_by_id(pool, ids[0])).port == 6000  # the liar moved nothing
    await registry.close()


async def test_one_request_that_cannot_be_stored_fails_alone(pool):
    registry, ids, rids = await fleet(pool, "i-bad", 3)
    good = [registry.heartbeat(rids[device_id], device_id, 60, "127.0.5.1", 5683) for device_id in ids]
    bad = registry.heartbeat(rids[ids[0]], ids[0], 2**40, "127.0.5.1", 5683)  # beyond PostgreSQL's integer
    outcomes = await asyncio.gather(*good, bad, return_exceptions=True)
    assert outcomes[:3] == [True, True, True]
    assert isinstance(outcomes[3], asyncpg.DataError) and "int32" in str(outcomes[3]), outcomes[3]
    assert [(await devices_q.get_by_id(pool, d)).address for d in ids] == ["127.0.5.1"] * 3
    await registry.close()


@pytest.mark.parametrize("values", [{"c": 10**400}, {"c\x00": 1}])
async def test_values_that_cannot_be_stored_are_refused_before_the_buffer(pool, values):
    from pifleet.errors import InvalidError

    registry, ids, _ = await fleet(pool, f"i-inv{len(str(values))}", 1)
    with pytest.raises(InvalidError):
        await registry.telemetry(ids[0], "127.0.3.1", "climate", values)
    assert registry._reports.written == 0
    await registry.close()
