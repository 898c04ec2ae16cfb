"""The master's metrics in-process: what a Prometheus scrape shows after runs, on a real PostgreSQL pool, from a
real CoAP endpoint on loopback; and JSON log lines. A test reads the exposition text, as Prometheus would."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import uuid
from datetime import timedelta

import aiocoap
import msgspec
import pytest
from aiocoap.numbers.codes import Code
from prometheus_client.parser import text_string_to_metric_families

from pifleet.cli.serve import JsonFormatter
from pifleet.devices.registry import Registry
from pifleet.errors import BoardError
from pifleet.events import EventHub
from pifleet.gateway.coap import Gateway
from pifleet.jobs.runner import Runner
from pifleet.jobs.service import JobService
from pifleet.metrics import Metrics
from pifleet.model import JobSpec
from pifleet.storage import devices as devices_q
from tests.support.masters import free_port
from tests.support.waits import wait_until
from tests.unit.conftest import FakeLink, RecordingQueue

BLIND_CAP = {"name": "blind", "version": "1", "commands": {"stop": {}}}


async def scrape(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one exposition, parsed by prometheus_client's own parser."""
    text = (await metrics.exposition()).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
async def fleet(pool):
    """One online board (vb-m1, named m1) and one that never registered."""
    await devices_q.ensure_role(pool, "blind")
    await devices_q.upsert_registration(
        pool,
        device_id="vb-m1",
        name="m1",
        kind="pifleet.esp32",
        role="blind",
        address="127.0.0.2",
        port=5683,
        registration_id="rm1",
        lifetime_s=86400,
        firmware=None,
        mpy=None,
        agent_version=None,
        links="",
    )
    await devices_q.replace_capabilities(pool, "vb-m1", [BLIND_CAP])
    return pool


@pytest.fixture
async def env(fleet, clock):
    queue, link, hub, metrics = RecordingQueue(), FakeLink(), EventHub(), Metrics()
    jobs = JobService(fleet, queue, hub, clock=clock)
    runner = Runner(jobs, Registry(fleet, hub, link), link, command_timeout_s=5.0, metrics=metrics)
    metrics.read_pool(fleet)
    metrics.read_boards(lambda: devices_q.list_devices(fleet))
    return runner, jobs, link, clock, metrics


async def run_now(jobs: JobService, runner: Runner, name: str, **kw) -> None:
    base = {"name": name, "target": {"device": "m1"}, "action": {"capability": "blind", "command": "stop"}}
    await jobs.save(msgspec.convert(base | {"trigger": {"type": "manual"}} | kw, JobSpec))
    execution = await jobs.run_now(name)
    await runner.run(uuid.UUID(execution.id), 0)
    await runner.drain(timeout=5)


async def test_a_run_that_succeeded_is_counted_with_its_command_time_and_fire_error(env):
    runner, jobs, link, clock, metrics = env
    before = await scrape(metrics)
    assert before[("pifleet_executions_total", (("state", "succeeded"),))] == 0  # a graph starts at 0

    await run_now(jobs, runner, "stop-ok")
    after = await scrape(metrics)
    assert after[("pifleet_executions_total", (("state", "succeeded"),))] == 1
    labels = (("capability", "blind"), ("command", "stop"))
    assert after[("pifleet_command_duration_seconds_count", labels)] == 1
    assert after[("pifleet_command_duration_seconds_bucket", (*labels, ("le", "+Inf")))] == 1
    assert after[("pifleet_fire_error_seconds_count", ())] == 1
    assert after[("pifleet_fire_error_seconds_sum", ())] == 0  # the test's clock stood still: started when due


async def test_a_run_retried_then_failed_counts_once_as_failed_but_every_command(env):
    runner, jobs, link, clock, metrics = env
    link.answer("vb-m1", BoardError("jammed"), BoardError("jammed"))
    await run_now(jobs, runner, "stop-bad", retry={"attempts": 2, "backoff_s": 1})
    after_first = await scrape(metrics)
    assert after_first[("pifleet_executions_total", (("state", "failed"),))] == 0  # a retry is planned: not ended

    clock.advance(1)
    (run,) = [e for e in await jobs.executions(job="stop-bad", limit=10)]
    await runner.run(uuid.UUID(run.id), 1)
    await runner.drain(timeout=5)
    after = await scrape(metrics)
    assert after[("pifleet_executions_total", (("state", "failed"),))] == 1
    assert after[("pifleet_command_duration_seconds_count", (("capability", "blind"), ("command", "stop")))] == 2


async def test_a_late_run_is_missed_and_its_lateness_observed(env):
    runner, jobs, link, clock, metrics = env
    await jobs.save(
        msgspec.convert(
            {
                "name": "late",
                "target": {"device": "m1"},
                "action": {"capability": "blind", "command": "stop"},
                "trigger": {"type": "manual"},
                "misfire": {"policy": "skip"},
            },
            JobSpec,
        )
    )
    execution = await jobs.run_now("late")
    clock.advance(120)
    await runner.run(uuid.UUID(execution.id), 0)
    await runner.drain(timeout=5)
    after = await scrape(metrics)
    assert after[("pifleet_executions_total", (("state", "missed"),))] == 1
    assert after[("pifleet_fire_error_seconds_sum", ())] == timedelta(seconds=120).total_seconds()
    assert after[("pifleet_fire_error_seconds_bucket", (("le", "60.0"),))] == 0
    assert after[("pifleet_fire_error_seconds_bucket", (("le", "300.0"),))] == 1


async def test_boards_and_last_seen_are_read_from_the_database_at_each_scrape(env, fleet):
    *_, metrics = env
    seen = await scrape(metrics)
    assert seen[("pifleet_boards", (("state", "online"),))] == 1
    assert seen[("pifleet_board_last_seen_seconds", (("device", "m1"),))] > 0
    await fleet.execute("update devices set unreachable = 'gone' where id = 'vb-m1'")
    try:
        seen = await scrape(metrics)
        assert seen[("pifleet_boards", (("state", "online"),))] == 0
        assert seen[("pifleet_boards", (("state", "offline"),))] == 1
    finally:
        await fleet.execute("update devices set unreachable = null where id = 'vb-m1'")


async def test_the_pool_shows_its_size_and_the_requests_waiting_for_a_connection(fleet):
    metrics = Metrics()
    metrics.read_pool(fleet)  # only the pool: reading the boards would wait for a connection too
    held = [await fleet.acquire() for _ in range(fleet.get_max_size() - fleet.get_size() + fleet.get_idle_size())]
    waiting = asyncio.ensure_future(fleet.acquire())
    try:
        await asyncio.sleep(0.05)
        seen = await scrape(metrics)
        assert seen[("pifleet_db_pool_waiters", ())] == 1
        assert seen[("pifleet_db_pool_size", ())] == seen[("pifleet_db_pool_max_size", ())] == fleet.get_max_size()
        assert seen[("pifleet_db_pool_idle", ())] == 0
    finally:
        for conn in held:
            await fleet.release(conn)
        await fleet.release(await waiting)
    assert (await scrape(metrics))[("pifleet_db_pool_waiters", ())] == 0


async def test_two_masters_in_one_process_keep_their_own_counts():
    one, two = Metrics(), Metrics()
    one.executions.labels("succeeded").inc()
    one.coap_events["registrations"] += 1
    assert (await scrape(one))[("pifleet_executions_total", (("state", "succeeded"),))] == 1
    assert (await scrape(two))[("pifleet_executions_total", (("state", "succeeded"),))] == 0
    assert ("pifleet_coap_events_total", (("event", "registrations"),)) not in await scrape(two)


async def test_the_coap_endpoint_counts_what_it_served_refused_and_dropped(tmp_path):
    metrics = Metrics()
    port = free_port(socket.SOCK_DGRAM)
    gateway = Gateway("127.0.0.1", port, keys_dir=tmp_path, metrics=metrics)
    await gateway.start(registry=None)
    client = await aiocoap.Context.create_client_context()
    try:
        base = f"coap://127.0.0.1:{port}"
        answer = await client.request(aiocoap.Message(code=Code.GET, uri=base + "/.well-known/core")).response
        assert answer.code == Code.CONTENT
        answer = await client.request(aiocoap.Message(code=Code.POST, uri=base + "/rd?ep=stranger")).response
        assert answer.code == Code.UNAUTHORIZED  # not paired: refused by the resource
        answer = await client.request(aiocoap.Message(code=Code.GET, uri=base + "/nothing-here")).response
        assert answer.code == Code.NOT_FOUND
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x40", ("127.0.0.1", port))  # one byte: not CoAP
        await asyncio.to_thread(
            wait_until, lambda: metrics.coap_events["malformed_dropped"] >= 1, what="the malformed datagram counted"
        )
        seen = await scrape(metrics)
        assert seen[("pifleet_coap_datagrams_total", (("outcome", "served"),))] == 1
        assert seen[("pifleet_coap_datagrams_total", (("outcome", "refused"),))] == 2
        assert seen[("pifleet_coap_datagrams_total", (("outcome", "malformed"),))] == 1
        # the JSON view shows the same counters
        assert metrics.coap_counts()["registrations_refused"] == 1
        assert seen[("pifleet_coap_events_total", (("event", "registrations_refused"),))] == 1
    finally:
        await client.shutdown()
        await gateway.stop()


def test_json_log_lines_carry_the_structured_fields_and_the_traceback():
    formatter = JsonFormatter()
    record = logging.LogRecord("pifleet.jobs.runner", logging.INFO, __file__, 1, "run %s ok", ("e1",), None)
    record.__dict__.update(execution="e1", device="vb-m1", job="evening")
    line = json.loads(formatter.format(record))
    assert line["message"] == "run e1 ok" and line["level"] == "INFO" and line["logger"] == "pifleet.jobs.runner"
    assert (line["execution"], line["device"], line["job"]) == ("e1", "vb-m1", "evening")
    assert line["time"].endswith("+00:00")
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("pifleet", logging.ERROR, __file__, 1, "crashed", (), sys.exc_info())
    line = json.loads(formatter.format(record))
    assert "ValueError: broken" in line["exc"] and "\n" not in formatter.format(record)
