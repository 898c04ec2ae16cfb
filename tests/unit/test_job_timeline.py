"""What runs next (JobService.timeline, GET /api/timeline) as a person reads it: the planned run, the projected
occurrences and the follow-ups they bring, a role's run on each of its devices; and the one-pass projection of
a cron trigger agrees with asking for the next fire again and again, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pifleet.events import EventHub
from pifleet.jobs import triggers
from pifleet.jobs.service import JobService
from pifleet.model import CronTrigger
from tests.unit.conftest import RecordingQueue
from tests.unit.test_job_apply import doc, fleet, specs  # noqa: F401 — the module's two blinds

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("expr", "tz", "after"),
    [
        ("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC)),  # 02:30 does not exist on the 29th
        ("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 23, tzinfo=UTC)),  # exists twice on the 25th
        ("*/20 6-7 * * 1-5", "UTC", datetime(2026, 11, 26, 6, 20, tzinfo=UTC)),
        ("0 12 29 2 *", "UTC", datetime(2026, 11, 26, tzinfo=UTC)),  # none within the window
    ],
)
def test_a_cron_window_in_one_pass_is_what_next_fire_says_again_and_again(expr, tz, after):
    trigger, end = CronTrigger(expr=expr, tz=tz), after + timedelta(days=7)
    expected, at = [], after
    while (at := triggers.next_fire(trigger, at)) is not None and at <= end:
        expected.append(at)
    assert triggers.occurrences(trigger, after, end, limit=500) == expected
    assert triggers.occurrences(trigger, after, end, limit=3, memo={}) == expected[:3]


async def test_the_timeline_shows_planned_projected_follow_ups_and_role_devices(fleet, clock):  # noqa: F811
    jobs = JobService(fleet, RecordingQueue(), EventHub(), clock=clock)
    evening = doc("tl-evening", trigger={"type": "cron", "expr": "0 22 * * *", "tz": "Europe/Berlin"})
    evening["follow_ups"] = [
        {
            "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 5}},
            "trigger": {"type": "next", "time": "07:00", "tz": "Europe/Berlin"},
        }
    ]
    noon = doc("tl-noon", target={"role": "blind"}, trigger={"type": "cron", "expr": "0 12 * * *", "tz": "UTC"})
    await jobs.apply(specs(evening, noon))

    entries = [e for e in await jobs.timeline(3) if e.job.startswith("tl-")]
    assert entries == sorted(entries, key=lambda e: (e.at, e.job))
    evenings = [e for e in entries if e.job == "tl-evening" and not e.follow_up]
    assert [e.kind for e in evenings] == ["planned", "projected", "projected"]
    assert all(e.at.astimezone(BERLIN).hour == 22 and e.device == "apply-1" for e in evenings)
    mornings = [e for e in entries if e.job == "tl-evening" and e.follow_up]
    assert [e.at.astimezone(BERLIN).hour for e in mornings] == [7, 7, 7]  # the last one is within the 3 days too
    assert mornings[0].params == {"direction": "up", "seconds": 5}
    noons = [(e.at.day, e.device) for e in entries if e.job == "tl-noon"]
    assert noons == [(d, b) for d in (27, 28, 29) for b in ("apply-1", "apply-2")]
    only = await jobs.timeline(3, device="apply-2")
    assert {e.job for e in only if e.job.startswith("tl-")} == {"tl-noon"}
