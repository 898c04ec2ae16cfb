"""The dashboard's pure parts: the job editor's form gives the job document the API takes, for every trigger type
and follow-ups, and a saved job comes back into the same fields; a command's controls follow its declared schema;
a chart breaks its line where readings stop and never has more points than buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec
import pytest

from pifleet.model import JobSpec
from pifleet.web.pages import charts, controls, jobform

BLIND = {
    "blind.move": {
        "direction": {"type": "enum", "values": ["up", "down"]},
        "seconds": {"type": "number", "min": 0.1, "max": 120, "unit": "s"},
    },
    "blind.stop": {},
    "blind.goto": {"position": {"type": "integer", "min": 0, "max": 100, "unit": "%"}},
}
BASE = {
    "name": "evening",
    "target.kind": "device",
    "target.name": "blind-1",
    "action.command": "blind.move",
    "action.params.direction": "down",
    "action.params.seconds": "5",
}
TRIGGERS = {
    "manual": ({}, {"type": "manual"}),
    "at": (
        {"trigger.at": "2026-12-24T18:00", "trigger.tz": "Europe/Berlin"},
        {"type": "at", "at": "2026-12-24T18:00:00+01:00"},
    ),
    "cron": (
        {"trigger.expr": "0 20 * * *", "trigger.tz": "Europe/Berlin"},
        {"type": "cron", "expr": "0 20 * * *", "tz": "Europe/Berlin"},
    ),
    "every": ({"trigger.seconds": "90"}, {"type": "every", "seconds": 90.0}),
    "sun": (
        {"trigger.event": "sunset", "trigger.offset_s": "-600"},
        {"type": "sun", "event": "sunset", "offset_s": -600.0},
    ),
    "after": (
        {"trigger.job": "morning", "trigger.on": "failure"},
        {"type": "after", "job": "morning", "on": "failure"},
    ),
    "threshold": (
        {
            "trigger.device": "temp-1",
            "trigger.capability": "temperature",
            "trigger.command": "read",
            "trigger.path": "celsius",
            "trigger.above": "30",
            "trigger.poll_s": "5",
        },
        {
            "type": "threshold",
            "device": "temp-1",
            "capability": "temperature",
            "command": "read",
            "path": "celsius",
            "above": 30.0,
            "poll_s": 5.0,
        },
    ),
}


@pytest.mark.parametrize("kind", TRIGGERS)
def test_every_trigger_type_gives_the_api_document_and_comes_back(kind):
    fields, trigger = TRIGGERS[kind]
    form = {
        **BASE,
        "trigger.type": kind,
        **fields,
        "follow_ups[0].action.command": "blind.move",
        "follow_ups[0].action.params.direction": "up",
        "follow_ups[0].action.params.seconds": "5",
        "follow_ups[0].trigger.type": "next",
        "follow_ups[0].trigger.time": "07:00",
        "follow_ups[0].trigger.tz": "Europe/Berlin",
        "follow_ups[1].action.command": "",  # the editor's empty row
        "retry.attempts": "3",
    }
    doc = jobform.document(form, BLIND)
    assert doc["trigger"] == trigger
    assert doc["action"] == {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 5.0}}
    assert doc["follow_ups"] == [
        {
            "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 5.0}},
            "trigger": {"type": "next", "time": "07:00", "tz": "Europe/Berlin"},
        }
    ]
    spec = msgspec.convert(doc, JobSpec)  # what POST /api/jobs decodes
    again = jobform.document(jobform.form_of(msgspec.to_builtins(spec)), BLIND)
    assert msgspec.convert(again, JobSpec) == spec


def test_refusals_name_the_input_they_belong_to():
    with pytest.raises(jobform.FormError) as e:
        jobform.document({**BASE, "action.params.seconds": "five", "trigger.type": "manual"}, BLIND)
    assert e.value.field == "action.params.seconds"
    with pytest.raises(msgspec.ValidationError) as v:
        msgspec.convert(jobform.document({**BASE, "trigger.type": "every", "trigger.seconds": "0"}, BLIND), JobSpec)
    assert jobform.decode_field(v.value) == "trigger.seconds"
    assert jobform.input_for("follow_ups[0].action.capability") == "follow_ups[0].action.command"
    assert jobform.input_for("target.device") == "target.name"


def test_controls_follow_the_declared_schema():
    move, stop, goto = (
        controls.Command("blind", name.split(".")[1], [controls.control(k, v) for k, v in params.items()])
        for name, params in BLIND.items()
    )
    assert [(c.name, c.kind) for c in move.controls] == [("direction", "select"), ("seconds", "duration")]
    assert move.controls[1].unit == "s" and move.controls[1].high == 120
    assert stop.controls == []  # a button
    (position,) = goto.controls
    assert (position.kind, position.low, position.high, position.step, position.unit) == ("slider", 0, 100, "1", "%")
    optional = controls.control("up_s", {"type": "number", "min": 1, "max": 300, "required": False})
    assert optional.kind == "number"  # a slider always has a value: an optional bounded number is a field


class B(NamedTuple):
    at: datetime
    count: int
    low: float
    high: float
    mean: float


def test_a_chart_breaks_where_readings_stop_and_keeps_to_its_buckets():
    until = datetime(2026, 12, 2, 12, tzinfo=UTC)
    since = until - timedelta(hours=24)
    width = timedelta(minutes=6)
    buckets = [B(since + i * width, 6, 20.0, 21.0, 20.5) for i in range(240) if not 50 <= i < 60]
    chart = charts.line_chart(buckets, since, until, width)
    assert len(chart.lines) == 2 and chart.points == 230 and chart.readings == 230 * 6
    assert sum(len(line.split()) for line in chart.lines) == 230
    xs = [float(p.split(",")[0]) for line in chart.lines for p in line.split()]
    assert charts.LEFT <= min(xs) and max(xs) <= charts.WIDTH - charts.RIGHT
