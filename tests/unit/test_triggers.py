"""Next-fire computation: cron in a time zone across DST, follow-up times, intervals. Pure functions."""

from datetime import UTC, datetime, timedelta

import pytest

from pifleet.errors import InvalidError
from pifleet.jobs.triggers import Cron, follow_up_time, next_fire, validate
from pifleet.model import AtTrigger, CronTrigger, DelayTrigger, EveryTrigger, ManualTrigger, NextTimeTrigger

BERLIN = "Europe/Berlin"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_20_00_berlin_in_winter_and_summer():
    t = CronTrigger(expr="0 20 * * *", tz=BERLIN)
    assert next_fire(t, utc(2026, 11, 26, 12, 0)) == utc(2026, 11, 26, 19, 0)  # CET, +01:00
    assert next_fire(t, utc(2026, 11, 26, 19, 0)) == utc(2026, 11, 27, 19, 0)  # strictly after
    assert next_fire(t, utc(2026, 7, 1, 12, 0)) == utc(2026, 7, 1, 18, 0)  # CEST, +02:00


def test_spring_forward_02_30_runs_once_after_the_gap():
    t = CronTrigger(expr="30 2 * * *", tz=BERLIN)
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist, it runs at 03:30 CEST (01:30 UTC)
    first = next_fire(t, utc(2026, 3, 28, 12, 0))
    assert first == utc(2026, 3, 29, 1, 30)
    assert next_fire(t, first) == utc(2026, 3, 30, 0, 30)  # next day 02:30 CEST


def test_fall_back_02_30_runs_once_at_the_first_occurrence():
    t = CronTrigger(expr="30 2 * * *", tz=BERLIN)
    # 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens twice; only the first (00:30 UTC) fires
    first = next_fire(t, utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)
    assert next_fire(t, first) == utc(2026, 10, 26, 1, 30)


def test_cron_fields_lists_ranges_steps_and_weekdays():
    c = Cron("*/15 8-9 * * 1-5")
    assert c.minutes == {0, 15, 30, 45} and c.hours == {8, 9} and c.weekdays == {1, 2, 3, 4, 5}
    # Saturday 2026-11-28 → the next fire is Monday 08:00 UTC
    assert next_fire(CronTrigger(expr="*/15 8-9 * * 1-5"), utc(2026, 11, 28, 0, 0)) == utc(2026, 11, 30, 8, 0)
    assert Cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too


@pytest.mark.parametrize("expr", ["0 20 * *", "61 * * * *", "0 24 * * *", "a b c d e", "*/0 * * * *"])
def test_bad_cron_is_refused_naming_the_field(expr):
    with pytest.raises(InvalidError) as err:
        validate(CronTrigger(expr=expr))
    assert err.value.field == "trigger.expr"


def test_unknown_time_zone_is_refused():
    with pytest.raises(InvalidError) as err:
        validate(CronTrigger(expr="0 20 * * *", tz="Mars/Olympus"))
    assert err.value.field == "trigger.tz"


def test_follow_up_at_07_00_is_the_next_morning():
    finished = utc(2026, 11, 26, 19, 0, 5)  # 20:00:05 in Berlin
    assert follow_up_time(NextTimeTrigger(time="07:00", tz=BERLIN), finished) == utc(2026, 11, 27, 6, 0)
    assert follow_up_time(DelayTrigger(seconds=90), finished) == finished + timedelta(seconds=90)


def test_at_every_and_manual():
    at = utc(2026, 12, 1, 8, 0)
    assert next_fire(AtTrigger(at=at), utc(2026, 11, 1)) == at
    assert next_fire(AtTrigger(at=at), at) is None  # once only
    created = utc(2026, 11, 26, 12, 0)
    assert next_fire(EveryTrigger(seconds=600), utc(2026, 11, 26, 12, 25), created=created) == utc(2026, 11, 26, 12, 30)
    assert next_fire(ManualTrigger(), created) is None


BERLIN_LOCATION = (52.52, 13.405)


def test_sunset_with_an_offset_in_berlin():
    from pifleet.model import SunTrigger

    t = SunTrigger(event="sunset", offset_s=-1800)
    when = next_fire(t, utc(2026, 11, 26, 12, 0), location=BERLIN_LOCATION)
    assert utc(2026, 11, 26, 14, 25) < when < utc(2026, 11, 26, 14, 35)  # sunset ~14:59 UTC, minus 30 min
    after_it = next_fire(t, when, location=BERLIN_LOCATION)
    assert timedelta(hours=23, minutes=50) < after_it - when < timedelta(hours=24, minutes=10)


def test_sunrise_in_the_polar_night_waits_for_the_sun():
    from pifleet.model import SunTrigger

    when = next_fire(SunTrigger(event="sunrise"), utc(2026, 12, 1), location=(78.2, 15.6))  # Longyearbyen
    assert utc(2027, 2, 10) < when < utc(2027, 2, 25)


def test_sun_triggers_need_a_location():
    from pifleet.model import SunTrigger

    with pytest.raises(InvalidError) as err:
        validate(SunTrigger(event="sunset"), None)
    assert "pifleet settings set latitude" in err.value.detail


def test_threshold_fires_once_per_crossing_and_rearms_past_the_hysteresis():
    from pifleet.jobs.threshold import State, step
    from pifleet.model import ThresholdTrigger

    t = ThresholdTrigger(
        device="temp-1", capability="temperature", command="read", path="celsius", above=28, hysteresis=1
    )
    state, fired, t0 = State(), [], utc(2026, 7, 1, 12)
    for i, value in enumerate([27, 28.5, 29, 30, 27.5, 28.2, 26.9, 28.1, 29]):
        state, fire = step(t, state, value, t0 + timedelta(minutes=i))
        fired.append(fire)
    # crosses at 28.5 (fires), stays above, dips to 27.5 (not past 27: no re-arm), 28.2 no fire,
    # 26.9 re-arms, 28.1 fires again
    assert fired == [False, True, False, False, False, False, False, True, False]


def test_threshold_for_duration_and_below():
    from pifleet.jobs.threshold import State, step
    from pifleet.model import ThresholdTrigger

    t = ThresholdTrigger(device="d", capability="c", command="r", path="v", below=5, for_s=120, hysteresis=0.5)
    state, t0 = State(), utc(2026, 1, 1)
    state, fire = step(t, state, 4, t0)
    assert not fire and state.since == t0
    state, fire = step(t, state, 4.5, t0 + timedelta(seconds=60))
    assert not fire
    state, fire = step(t, state, 6, t0 + timedelta(seconds=90))  # back above: the clock restarts
    assert not fire and state.since is None
    state, _ = step(t, state, 4, t0 + timedelta(seconds=100))
    state, fire = step(t, state, 4, t0 + timedelta(seconds=220))
    assert fire and not state.armed


# ---- next fire with a fake clock: at, every, delay, DST edges, misfire ----------------------------------------


def test_at_with_an_offset_is_returned_in_utc_and_fires_once():
    at = datetime.fromisoformat("2026-11-27T20:00:00+01:00")
    assert next_fire(AtTrigger(at=at), utc(2026, 11, 27, 18, 59, 59)) == utc(2026, 11, 27, 19, 0)
    assert next_fire(AtTrigger(at=at), utc(2026, 11, 27, 19, 0)) is None


@pytest.mark.parametrize(
    "after, expected",
    [
        (utc(2026, 11, 26, 12, 0), utc(2026, 11, 26, 12, 10)),  # at creation: one period later
        (utc(2026, 11, 26, 12, 10), utc(2026, 11, 26, 12, 20)),  # on a tick: strictly after
        (utc(2026, 11, 26, 11, 0), utc(2026, 11, 26, 12, 10)),  # before creation: the first tick
        (utc(2026, 11, 29, 3, 55), utc(2026, 11, 29, 4, 0)),  # days later, still on the creation's grid
    ],
)
def test_every_keeps_to_the_grid_of_its_creation(after, expected):
    assert next_fire(EveryTrigger(seconds=600), after, created=utc(2026, 11, 26, 12, 0)) == expected


def test_every_hour_runs_through_the_dst_change_in_real_hours():
    created = utc(2026, 3, 29, 0, 0)  # 01:00 CET; the clocks jump at 01:00 UTC
    ticks, after = [], created
    for _ in range(3):
        after = next_fire(EveryTrigger(seconds=3600), after, created=created)
        ticks.append(after)
    assert ticks == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0), utc(2026, 3, 29, 3, 0)]


def test_a_delay_is_real_seconds_across_the_fall_back():
    finished = utc(2026, 10, 25, 0, 30)  # 02:30 CEST, half an hour before the clocks go back
    assert follow_up_time(DelayTrigger(seconds=3600), finished) == utc(2026, 10, 25, 1, 30)


def test_a_follow_up_at_07_00_on_the_morning_of_spring_forward():
    finished = utc(2026, 3, 28, 19, 0)  # 20:00 CET on Saturday
    # Sunday 07:00 is CEST already: 05:00 UTC, not 06:00
    assert follow_up_time(NextTimeTrigger(time="07:00", tz=BERLIN), finished) == utc(2026, 3, 29, 5, 0)


def test_a_follow_up_at_a_time_the_spring_gap_skips_runs_after_the_gap():
    finished = utc(2026, 3, 28, 23, 0)  # 00:00 CET on the night of the change
    assert follow_up_time(NextTimeTrigger(time="02:30", tz=BERLIN), finished) == utc(2026, 3, 29, 1, 30)


def test_a_follow_up_at_a_time_that_happens_twice_runs_at_the_first():
    finished = utc(2026, 10, 24, 22, 0)  # 00:00 CEST on the night the clocks go back
    assert follow_up_time(NextTimeTrigger(time="02:30", tz=BERLIN), finished) == utc(2026, 10, 25, 0, 30)


def test_a_weekly_cron_on_the_sunday_of_the_change():
    t = CronTrigger(expr="0 9 * * 0", tz=BERLIN)
    assert next_fire(t, utc(2026, 3, 25)) == utc(2026, 3, 29, 7, 0)  # 09:00 CEST
    assert next_fire(t, utc(2026, 10, 20)) == utc(2026, 10, 25, 8, 0)  # 09:00 CET


def _row(scheduled_for: datetime) -> dict:
    return {"scheduled_for": scheduled_for}


def _spec(**misfire):
    import msgspec

    from pifleet.model import JobSpec

    return msgspec.convert(
        {
            "name": "j",
            "target": {"device": "d"},
            "action": {"capability": "blind", "command": "stop"},
            "trigger": {"type": "manual"},
            "misfire": misfire,
        },
        JobSpec,
    )


@pytest.mark.parametrize(
    "misfire, late_s, missed",
    [
        ({}, 5, False),  # on time: the scheduler wakes every second
        ({"policy": "run_late", "grace_s": 600}, 600, False),
        ({"policy": "run_late", "grace_s": 600}, 601, True),
        ({"policy": "run_late", "grace_s": 0}, 4, False),  # never stricter than "on time"
        ({"policy": "skip"}, 5, False),
        ({"policy": "skip", "grace_s": 3600}, 6, True),  # skip ignores the grace window
    ],
)
def test_misfire_policy(misfire, late_s, missed):
    from pifleet.jobs.runner import misfire_reason

    due = utc(2026, 11, 26, 19, 0)
    reason = misfire_reason(_row(due), _spec(**misfire), due + timedelta(seconds=late_s))
    assert (reason is not None) is missed
    if missed:
        assert reason.startswith("missed: due 2026-11-26T19:00:00+00:00")
