"""What each site owns, decided by the database: two sites' sessions on one real PostgreSQL, in-process (no master
processes): a run is claimed only by its board's site, recorded in that site's Huey queue and announced on its
channel; a run without a device goes to every live site; one run per device at a time holds across masters, and a
master that dies lets go of its devices."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from pifleet.jobs.queue import JobQueue
from pifleet.sites import channel, queue_name, session_url
from pifleet.sites.locks import DeviceLocks
from pifleet.sites.service import Sites
from pifleet.storage import jobs as q
from pifleet.storage import migrations, postgres


@pytest.fixture(scope="module")
async def db(pg_url):
    """Sessions of site a and site b on one fresh database, with a board paired through each (the secret's writer
    is the owner) and a manual job."""
    url = postgres.with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}")
    pools = {}
    for site in ("a", "b"):
        pools[site] = await postgres.create_pool(session_url(url, site))
    await migrations.migrate(pools["a"])
    for site, pool in pools.items():
        await pool.execute("insert into devices (id, name) values ($1, $1)", f"board-{site}")
        await pool.execute(
            "insert into device_secrets (device_id, secret, oscore_id) values ($1, 'k', $2)",
            f"board-{site}",
            site.encode(),
        )
    job_id = await pools["a"].fetchval(
        "insert into jobs (name, spec) values ('j', '{}'::jsonb) returning id"  # the row only: runs hang off it
    )
    yield url, pools, job_id
    for pool in pools.values():
        await pool.close()


_TICKS = itertools.count(1)


async def run_on(pool, job_id: int, device: str | None, when: datetime) -> uuid.UUID:
    """A planned run (one job's runs need instants of their own: a millisecond apart)."""
    execution_id = uuid.uuid4()
    when += timedelta(milliseconds=next(_TICKS))
    await pool.execute(
        "insert into job_executions (id, job_id, device_id, capability, command, state, scheduled_for)"
        " values ($1, $2, $3, 'blind', 'stop', 'scheduled', $4)",
        execution_id,
        job_id,
        device,
        when,
    )
    return execution_id


async def test_a_board_belongs_to_the_site_that_paired_it_and_its_runs_to_that_site(db):
    url, pools, job_id = db
    sites = dict(await pools["a"].fetch("select id, site from devices"))
    assert sites == {"board-a": "a", "board-b": "b"}
    soon = datetime.now(UTC) + timedelta(seconds=30)
    mine, theirs = await run_on(pools["a"], job_id, "board-a", soon), await run_on(pools["a"], job_id, "board-b", soon)
    assert await q.claim(pools["a"], theirs, 0) is None  # written by a, but b's: only b claims it
    assert (await q.claim(pools["b"], theirs, 0))["site"] == "b"
    assert await q.claim(pools["b"], mine, 0) is None
    assert (await q.claim(pools["a"], mine, 0))["state"] == "dispatched"


async def test_runs_go_to_their_sites_queues_and_soon_ones_to_their_alarms(db):
    url, pools, job_id = db
    queues = {
        site: JobQueue(url, workers=1, site=site, live=lambda: frozenset({"a", "b"}), notice=Sites.run_notice)
        for site in ("a", "b")
    }
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(session_url(url, "b"))
    await listener.add_listener(channel("b"), lambda *args: heard.put_nowait(args[-1]))
    try:
        now = datetime.now(UTC)
        a_run = await run_on(pools["a"], job_id, "board-a", now + timedelta(seconds=20))
        b_soon = await run_on(pools["a"], job_id, "board-b", now + timedelta(seconds=20))
        b_later = await run_on(pools["a"], job_id, "board-b", now + timedelta(hours=2))
        anyone = await run_on(pools["a"], job_id, None, now + timedelta(seconds=20))  # a role's run
        runs = [(a_run, 0, now + timedelta(seconds=20)), (b_soon, 0, now + timedelta(seconds=20))]
        runs += [(b_later, 0, now + timedelta(hours=2)), (anyone, 0, now + timedelta(seconds=20))]
        local = await asyncio.to_thread(queues["a"].schedule_many_blocking, runs)
        assert {run[0] for run in local} == {a_run, anyone}  # what site a's own alarm hears of

        def recorded(site: str) -> set[uuid.UUID]:
            huey = queues[site].huey
            return {uuid.UUID(huey.deserialize_task(data).args[0]) for data in huey.storage.scheduled_items()}

        assert recorded("a") == {a_run, anyone}
        assert recorded("b") == {b_soon, b_later, anyone}
        notice = await asyncio.wait_for(heard.get(), 5)  # only the one due soon is announced to b's alarm
        assert str(b_soon) in notice and heard.empty()

        # b starts again: it rebuilds its own queue only, from every planned run — a's are a's business
        rows = await q.scheduled(pools["b"], limit=1000)
        await asyncio.to_thread(
            queues["b"].replace_all_blocking, [(r["id"], r["attempt"], r["scheduled_for"]) for r in rows]
        )
        assert recorded("a") == {a_run, anyone}
        assert b_soon in recorded("b") and a_run not in recorded("b")
        assert queue_name("default") == "pifleet" and queues["b"].huey.name == "pifleet.b"
    finally:
        await listener.close()
        for queue in queues.values():
            queue.huey.storage.close()


async def test_one_run_per_device_holds_across_masters(db):
    url, pools, job_id = db
    a, b = DeviceLocks(session_url(url, "a")), DeviceLocks(session_url(url, "b"))
    await a.start()
    await b.start()
    try:
        assert await a.acquire("board-a")
        assert not await b.acquire("board-a", wait=False)  # `refuse`: skipped
        assert await b.acquire_free(["board-a", "board-b"]) == {"board-b"}  # a role's run: the free ones
        waiting = asyncio.create_task(b.acquire("board-a"))  # `queue`: waits for it
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await a.release("board-a")
        assert await asyncio.wait_for(waiting, 5)
        await b.release("board-a")
        await b.release("board-b")

        assert await a.acquire("board-b")
        await a._conn.close()  # the master dies (its connection with it): its devices are free
        assert await asyncio.wait_for(b.acquire("board-b"), 5)
        await b.release("board-b")
    finally:
        await a.stop()
        await b.stop()


async def test_locks_asked_together_go_together_and_each_holds(db):
    # a rollout or a role's run asks for many devices at once: their tries and releases share statements
    url, _pools, _job_id = db
    a, b = DeviceLocks(session_url(url, "a")), DeviceLocks(session_url(url, "b"))
    await a.start()
    await b.start()
    statements = []
    a._conn.add_query_logger(lambda query: statements.append(len(query.args[1])))  # the devices of each
    devices = [f"many-{i:02d}" for i in range(40)]
    try:
        assert all(await asyncio.gather(*(a.acquire(d) for d in devices)))
        assert sum(statements) == 40 and len(statements) < 10, statements
        assert await b.acquire_free(devices) == set()  # each is held against the other master
        statements.clear()
        await asyncio.gather(*(a.release(d) for d in devices))
        assert sum(statements) == 40 and len(statements) < 10, statements
        assert await b.acquire_free(devices) == set(devices)
        for d in devices:
            await b.release(d)
        # a run cancelled while its try is out: the lock taken for it is let go of, the device stays free
        asking = asyncio.create_task(a.acquire("many-00"))
        await asyncio.sleep(0)
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)
        await asyncio.sleep(0.2)
        assert await b.acquire("many-00", wait=False)
    finally:
        await a.stop()
        await b.stop()
