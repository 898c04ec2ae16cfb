"""A cron trigger without a time zone runs in the master's (its settings: jobs/triggers.py, settings.house_zone)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pifleet import settings
from pifleet.jobs import triggers
from pifleet.model import CronTrigger


@pytest.fixture
def berlin():
    settings.use_house_zone(ZoneInfo("Europe/Berlin"))
    yield
    settings.use_house_zone(ZoneInfo("UTC"))


def test_a_cron_trigger_without_tz_runs_in_the_masters_zone(berlin):
    after = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    # 20:00 in Berlin (UTC+1 in December) is 19:00 UTC; one with its own zone keeps it
    assert triggers.next_fire(CronTrigger(expr="0 20 * * *"), after) == datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
    utc = CronTrigger(expr="0 20 * * *", tz="UTC")
    assert triggers.next_fire(utc, after) == datetime(2026, 12, 2, 20, 0, tzinfo=UTC)


def test_without_a_master_it_is_utc():
    after = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert triggers.next_fire(CronTrigger(expr="0 20 * * *"), after) == datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
