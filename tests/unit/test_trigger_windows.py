"""A timeline's instants of an `every` trigger, worked out by arithmetic (jobs/triggers.py occurrences), are what
asking for the next fire again and again gives: counted from when the job was saved, whether that is before the
window or inside it, a step that does not divide the window, and the limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pifleet.jobs import triggers
from pifleet.model import EveryTrigger

START = datetime(2026, 11, 26, 19, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "created", "days", "limit"),
    [
        (3600, START - timedelta(days=3, seconds=17), 7, 500),  # saved long before the window
        (3600, START + timedelta(hours=5, microseconds=7), 7, 500),  # saved inside it
        (7000, START - timedelta(seconds=1), 1, 500),  # a step that does not divide the window
        (60, START - timedelta(days=1), 7, 500),  # the limit cuts it off
        (86400, START - timedelta(days=1), 1, 500),  # one due exactly at the window's end
        (0.5, START, 0.0001, 500),
    ],
)
def test_every_in_a_window_is_next_fire_again_and_again(seconds, created, days, limit):
    trigger, end = EveryTrigger(seconds=seconds), START + timedelta(days=days)
    expected, at = [], START
    while len(expected) < limit and (at := triggers.next_fire(trigger, at, created=created)) <= end:
        expected.append(at)
    assert triggers.occurrences(trigger, START, end, limit=limit, created=created) == expected
