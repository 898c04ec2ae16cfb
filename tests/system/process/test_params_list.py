"""`list` and `object` parameters (the db capability's `args`, python's `kwargs`) are checked alike by the
master and by the agent, and each refusal names its field."""

import importlib.util
from pathlib import Path

import pytest

from pifleet.devices.params import check_command
from pifleet.errors import InvalidError
from pifleet.model import CapabilityRead, DeviceRead

REPO = Path(__file__).resolve().parents[3]

DB = CapabilityRead(
    name="db",
    version="1",
    commands={
        "query": {
            "sql": {"type": "string"},
            "args": {"type": "list", "required": False},
            "database": {"type": "string", "required": False},
        },
    },
)
PY = CapabilityRead(
    name="python",
    version="1",
    commands={
        "call": {"function": {"type": "string"}, "kwargs": {"type": "object", "required": False}},
    },
)
DEVICE = DeviceRead(
    id="proc-host",
    name="host",
    kind="pifleet.process",
    role="process",
    online=True,
    last_seen=None,
    address=None,
    port=None,
    firmware=None,
    mpy=None,
    agent_version=None,
    unreachable=None,
    capabilities=[DB, PY],
)


def _agent_schema():
    spec = importlib.util.spec_from_file_location("agent_schema_under_test", REPO / "micropython/agent/schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOOD = [
    ("db", "query", {"sql": "select $1::int", "args": [1]}),
    ("db", "query", {"sql": "select 1", "args": []}),
    ("db", "query", {"sql": "select 1"}),  # args is optional
    ("db", "query", {"sql": "select $1", "args": [{"nested": [1, 2]}, None, "x"]}),
    ("python", "call", {"function": "m:f", "kwargs": {"a": 1, "b": [1]}}),
    ("python", "call", {"function": "m:f", "kwargs": {}}),
]
BAD = [
    ("db", "query", {"sql": "select $1", "args": "1"}, "args", "must be a list"),
    ("db", "query", {"sql": "select $1", "args": {"a": 1}}, "args", "must be a list"),
    ("db", "query", {"sql": "select $1", "args": None}, "args", "must be a list"),
    ("python", "call", {"function": "m:f", "kwargs": [1]}, "kwargs", "must be an object"),
    ("python", "call", {"function": "m:f", "kwargs": "a=1"}, "kwargs", "must be an object"),
]


@pytest.mark.parametrize("cap, cmd, params", GOOD)
def test_lists_and_objects_pass_on_both_sides(cap, cmd, params):
    check_command(DEVICE, cap, cmd, params, "action")
    schema = next(c for c in DEVICE.capabilities if c.name == cap).commands[cmd]
    assert _agent_schema().validate(schema, params) is None


@pytest.mark.parametrize("cap, cmd, params, name, agent_message", BAD)
def test_wrong_kinds_are_refused_on_both_sides_naming_the_field(cap, cmd, params, name, agent_message):
    with pytest.raises(InvalidError) as err:
        check_command(DEVICE, cap, cmd, params, "action")
    assert err.value.field == f"action.params.{name}"
    schema = next(c for c in DEVICE.capabilities if c.name == cap).commands[cmd]
    assert _agent_schema().validate(schema, params) == (f"params.{name}", agent_message)
