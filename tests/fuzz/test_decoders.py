"""Fuzzing the master's pure decoders and checks in-process (no master, no database): what a board or a person can
hand them either works or is refused with the domain error naming the field — never another exception, never a
hang. CoAP datagrams (aiocoap's decoder as the gateway sets it up, the OSCORE option), job documents and their
triggers (cron, time zones, intervals), parameter checks against whatever schema a board declares, follow-up
references and conditions, adoption announcements and codes. Cases per target are printed at the end of the run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiocoap
import msgspec
import pytest
from aiocoap import error, oscore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pifleet.devices import params
from pifleet.devices.adoption import Announcement, normalize_code
from pifleet.errors import InvalidError
from pifleet.gateway.strict import refuse_undecodable_string_options
from pifleet.jobs import results, triggers
from pifleet.model import Condition, JobSpec

from .counts import record

pytestmark = pytest.mark.timeout(300)

N = 1000  # cases per target
SETTINGS = dict(
    max_examples=N,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)


@settings(**SETTINGS)
@given(data=st.binary(max_size=200) | st.binary(max_size=40).map(lambda b: b"\x40\x01\x00\x01" + b))
def test_coap_datagrams_decode_or_are_unparsable(data):
    """What the gateway's UDP transport decodes: a message, or UnparsableMessage (dropped and counted)."""
    record("decoder: CoAP datagram (aiocoap, strict string options)")
    refuse_undecodable_string_options()
    try:
        aiocoap.Message.decode(data)
    except error.UnparsableMessage:
        pass


@settings(**SETTINGS)
@given(option=st.binary(max_size=24), payload=st.binary(max_size=40))
def test_oscore_options_parse_or_are_refused(option, payload):
    """The OSCORE option of a request: parsed, or one of the errors gateway/strict.py turns into 4.02."""
    record("decoder: OSCORE option")
    msg = aiocoap.Message(code=aiocoap.POST, payload=payload, oscore=option)
    try:
        oscore.verify_start(msg)
    except (oscore.DecodeError, IndexError):
        pass


cron_field = st.one_of(
    st.sampled_from(
        [
            "*",
            "*/5",
            "0",
            "59",
            "1-5",
            "1,2,3",
            "5-1",
            "*/0",
            "-1",
            "60",
            "7",
            "0-7/2",
            "٣",
            "1-",
            ",",
            "*/",
            "a",
            "",
            "1/2/3",
            "99999999999999999999",
        ]
    ),
    st.text(alphabet="0123456789*/-,", max_size=8),
    st.text(max_size=6),
)


@settings(**SETTINGS)
@given(
    expr=st.one_of(st.lists(cron_field, min_size=0, max_size=7).map(" ".join), st.text(max_size=40)),
    tz=st.one_of(
        st.sampled_from(
            ["UTC", "Europe/Berlin", "America", "America/", "Etc", "../UTC", "x" * 300, "a\x00b", "", "posixrules"]
        ),
        st.text(max_size=20),
    ),
)
def test_cron_triggers_fire_or_are_refused(expr, tz):
    record("decoder: cron trigger (expression, time zone)")
    try:
        trigger = msgspec.convert({"type": "cron", "expr": expr, "tz": tz}, triggers.CronTrigger)
        triggers.validate(trigger)
    except (msgspec.ValidationError, InvalidError):
        return
    when = triggers.next_fire(trigger, NOW)
    assert when is None or when > NOW


trigger_docs = st.one_of(
    st.fixed_dictionaries({"type": st.just("every"), "seconds": st.floats(-1, 1e9) | st.integers()}),
    st.fixed_dictionaries(
        {
            "type": st.just("at"),
            "at": st.datetimes(timezones=st.none() | st.timezones()).map(datetime.isoformat) | st.text(max_size=30),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("sun"),
            "event": st.sampled_from(["sunrise", "dusk", "moonrise"]),
            "offset_s": st.floats(min_value=-50000, max_value=50000),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["manual", "after", "threshold", "cron", "every", "x"])},
        optional={
            "job": st.text(max_size=10),
            "expr": st.text(max_size=20),
            "seconds": json_values,
            "device": st.text(max_size=10),
            "path": st.text(max_size=10),
        },
    ),
    json_values,
)
job_docs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["j1", "bad name", ""]) | st.text(max_size=10),
        "target": st.fixed_dictionaries({}, optional={"device": st.text(max_size=8), "role": st.just("r")}),
        "action": st.fixed_dictionaries(
            {"capability": st.just("blind"), "command": st.just("move")}, optional={"params": json_values}
        ),
        "trigger": trigger_docs,
    },
    optional={
        "follow_ups": st.lists(
            st.fixed_dictionaries(
                {
                    "action": st.just({"capability": "blind", "command": "stop"}),
                    "trigger": st.one_of(
                        st.fixed_dictionaries({"type": st.just("delay"), "seconds": st.floats(-1, 1e6)}),
                        st.fixed_dictionaries(
                            {
                                "type": st.just("next"),
                                "time": st.text(max_size=6),
                                "tz": st.sampled_from(["UTC", "America", "Nowhere/x"]),
                            }
                        ),
                    ),
                }
            ),
            max_size=2,
        )
    },
)


@settings(**SETTINGS)
@given(doc=job_docs | json_values)
def test_job_documents_decode_validate_and_plan_or_are_refused(doc):
    """POST /api/jobs without the database: decode, the trigger checks, and the next fire time of what passed."""
    record("decoder: job document (JobSpec, triggers, next fire)")
    try:
        spec = msgspec.json.decode(json.dumps(doc), type=JobSpec)
        triggers.validate(spec.trigger, location=(52.5, 13.4))
        for i, follow_up in enumerate(spec.follow_ups):
            triggers.validate_follow_up(follow_up.trigger, i)
    except (msgspec.ValidationError, InvalidError):
        return
    when = triggers.next_fire(spec.trigger, NOW, created=NOW, location=(52.5, 13.4))
    assert when is None or when > NOW
    for follow_up in spec.follow_ups:
        assert triggers.follow_up_time(follow_up.trigger, NOW) > NOW


param_spec = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["number", "integer", "string", "boolean", "enum", "list", "object", "float"])
            | json_values,
            "min": st.floats(allow_nan=False) | st.integers() | json_values,
            "max": st.integers() | json_values,
            "values": st.lists(st.text(max_size=4) | st.integers(), max_size=3) | json_values,
            "required": st.booleans() | json_values,
            "unit": st.text(max_size=3),
        },
    ),
    json_values,
)


@settings(**SETTINGS)
@given(
    schema=st.dictionaries(st.sampled_from(["direction", "seconds", "x"]), param_spec, max_size=3),
    given_params=st.dictionaries(st.sampled_from(["direction", "seconds", "x", "y"]), json_values, max_size=3),
    commands=st.none() | json_values,
)
def test_parameters_are_checked_against_any_declared_schema(schema, given_params, commands):
    """Whatever a board declares in /cap (or a module in CONFIG), a command's parameters pass or are refused
    with InvalidError naming the parameter."""
    record("decoder: parameter checks (fleet.params)")
    declared = commands if isinstance(commands, dict) else {"move": schema}
    try:
        params.check_params("blind", "move", declared, given_params, "action")
    except InvalidError as exc:
        assert exc.field and exc.field.startswith("action.")
    try:
        params.check_config("blind", schema, given_params, "caps.blind")
    except InvalidError as exc:
        assert exc.field and exc.field.startswith("caps.blind")


@settings(**SETTINGS)
@given(
    result=json_values,
    path=st.text(alphabet="ab.0123-", max_size=10) | st.text(max_size=10),
    given_params=st.dictionaries(
        st.text(max_size=5),
        json_values | st.fixed_dictionaries({"$result": st.text(alphabet="ab.0-1", max_size=6)}),
        max_size=3,
    ),
    above=st.none() | st.floats(allow_nan=False),
    equals=json_values,
)
def test_follow_up_references_and_conditions(result, path, given_params, above, equals):
    record("decoder: follow-up references and conditions (jobs.results)")
    try:
        results.substitute(given_params, result)
    except InvalidError:
        pass
    try:
        condition = msgspec.convert({"path": path, "above": above, "equals": equals}, Condition)
    except msgspec.ValidationError:
        return
    ok, why = results.holds(condition, result)
    assert isinstance(ok, bool) and isinstance(why, str)


@settings(**SETTINGS)
@given(
    code=st.text(max_size=20),
    mac=st.sampled_from(["24:0a:7f:00:00:01"]) | st.text(max_size=20),
    nonce=st.binary(max_size=20),
    proof=st.binary(max_size=40),
    chip=st.text(max_size=60),
)
def test_adoption_codes_and_announcements(code, mac, nonce, proof, chip):
    record("decoder: adoption code and announcement")
    try:
        assert len(normalize_code(code)) == 8
    except InvalidError as exc:
        assert exc.field == "code"
    try:
        Announcement(mac=mac, chip=chip, nonce=nonce, proof=proof)
    except InvalidError as exc:
        assert exc.field in ("mac", "nonce", "proof")
