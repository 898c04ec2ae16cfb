"""Many jobs at once (JobService.apply, PUT /api/jobs): all saved with their next runs planned and handed to the
queue together, or none saved, the refusal naming each refused job and the field inside it."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from pifleet.errors import InvalidError
from pifleet.events import EventHub
from pifleet.jobs.service import JobService, JobsRefusedError
from pifleet.model import JobSpec
from pifleet.storage import devices as devices_q
from pifleet.storage import jobs as q
from pifleet.web.api.jobs import decode_jobs
from tests.unit.conftest import RecordingQueue
from tests.unit.test_runner import BLIND_CAP


@pytest.fixture(scope="module")
async def fleet(pool):
    await devices_q.ensure_role(pool, "blind")
    for i, name in enumerate(("apply-1", "apply-2"), start=1):
        await devices_q.upsert_registration(
            pool,
            device_id=f"vb-{name}",
            name=name,
            kind="pifleet.esp32",
            role="blind",
            address=f"127.0.1.{i}",
            port=5683,
            registration_id=f"ra{i}",
            lifetime_s=86400,
            firmware=None,
            mpy=None,
            agent_version=None,
            links="",
        )
        await devices_q.replace_capabilities(pool, f"vb-{name}", [BLIND_CAP])
    return pool


@pytest.fixture
def jobs(fleet, clock):
    return JobService(fleet, RecordingQueue(), EventHub(), clock=clock)


def doc(name: str, **kw) -> dict:
    return {
        "name": name,
        "target": {"device": "apply-1"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 5}},
        "trigger": {"type": "cron", "expr": "0 21 * * *", "tz": "Europe/Berlin"},  # 20:00 UTC
    } | kw


def specs(*docs: dict) -> list[JobSpec]:
    return [msgspec.convert(d, JobSpec) for d in docs]


async def test_a_list_is_saved_and_each_next_run_planned_and_handed_over_together(jobs, clock):
    saved = await jobs.apply(
        specs(
            doc("evening"),
            doc("role-noon", target={"role": "blind"}, trigger={"type": "cron", "expr": "0 12 * * *"}),
            doc("follower", trigger={"type": "after", "job": "evening", "on": "success"}),
            doc("off", enabled=False),
        )
    )
    assert [j.name for j in saved] == ["evening", "role-noon", "follower", "off"]
    tomorrow_noon = clock().replace(hour=12, minute=0) + timedelta(days=1)
    assert [j.next_run for j in saved] == [clock() + timedelta(hours=1), tomorrow_noon, None, None]
    for job in saved:  # as the API lists them
        assert (await q.get_job(jobs.pool, job.name)).next_run == job.next_run
    planned = {when for _, _, when in jobs.queue.scheduled}
    assert planned == {clock() + timedelta(hours=1), tomorrow_noon}
    (run,) = await q.list_executions(jobs.pool, job="evening", upcoming=True)
    assert (run.device, run.state, run.params) == ("apply-1", "scheduled", {"direction": "down", "seconds": 5})


async def test_applying_again_replaces_the_jobs_and_their_planned_runs(jobs, clock):
    await jobs.apply(specs(doc("again")))
    saved = await jobs.apply(specs(doc("again", trigger={"type": "cron", "expr": "30 21 * * *", "tz": "UTC"})))
    assert saved[0].next_run == clock().replace(hour=21, minute=30)
    runs = await q.list_executions(jobs.pool, job="again", state="scheduled")
    assert [r.scheduled_for for r in runs] == [saved[0].next_run]


async def test_a_refused_job_saves_none_and_the_refusal_names_each_job_and_field(jobs):
    bad = specs(
        doc("fine-1"),
        doc(
            "too-long",
            action={"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 500}},
        ),
        doc("nowhere", target={"device": "no-such-board"}),
        doc("fine-1"),
    )
    with pytest.raises(JobsRefusedError) as refused:
        await jobs.apply(bad)
    error = refused.value
    assert error.field == "[1].action.params.seconds" and error.extra["job"] == "too-long"
    assert "'too-long'" in error.detail and "nothing was saved" in error.detail
    assert [(r["job"], r["field"]) for r in error.extra["refusals"]] == [
        ("too-long", "[1].action.params.seconds"),
        ("nowhere", "[2].target.device"),
        ("fine-1", "[3].name"),
    ]
    assert await q.get_job(jobs.pool, "fine-1") is None  # all or nothing


def test_a_document_that_does_not_decode_is_refused_by_its_name_and_field():
    body = msgspec.json.encode(
        [doc("ok"), doc("bad-expr", trigger={"type": "cron", "expr": 5}), {"target": {"device": "apply-1"}}]
    )
    with pytest.raises(JobsRefusedError) as refused:
        decode_jobs(body)
    assert [(r["job"], r["field"]) for r in refused.value.extra["refusals"]] == [
        ("bad-expr", "[1].trigger.expr"),
        (None, "[2].name"),
    ]
    with pytest.raises(InvalidError):
        decode_jobs(b'{"name": "not a list"}')
