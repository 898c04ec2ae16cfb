"""Command parameters are checked against what the board declared, and each refusal names its field."""

import pytest

from pifleet.devices.params import check_command
from pifleet.errors import InvalidError
from pifleet.model import CapabilityRead, DeviceRead

BLIND = CapabilityRead(
    name="blind",
    version="1",
    commands={
        "move": {
            "direction": {"type": "enum", "values": ["up", "down"]},
            "seconds": {"type": "number", "min": 0.1, "max": 120, "unit": "s"},
        },
        "stop": {},
    },
)
DEVICE = DeviceRead(
    id="vb-1",
    name="blind-1",
    kind="pifleet.esp32",
    role="blind",
    online=True,
    last_seen=None,
    address=None,
    port=None,
    firmware=None,
    mpy=None,
    agent_version=None,
    unreachable=None,
    capabilities=[BLIND],
)


def test_a_valid_move_passes():
    check_command(DEVICE, "blind", "move", {"direction": "down", "seconds": 5}, "action")
    check_command(DEVICE, "blind", "stop", {}, "action")


@pytest.mark.parametrize(
    "cap, cmd, params, field",
    [
        ("relay", "on", {}, "action.capability"),
        ("blind", "open", {}, "action.command"),
        ("blind", "move", {"direction": "down"}, "action.params.seconds"),
        ("blind", "move", {"direction": "sideways", "seconds": 5}, "action.params.direction"),
        ("blind", "move", {"direction": "down", "seconds": 500}, "action.params.seconds"),
        ("blind", "move", {"direction": "down", "seconds": "5"}, "action.params.seconds"),
        ("blind", "move", {"direction": "down", "seconds": True}, "action.params.seconds"),
        ("blind", "move", {"direction": "down", "seconds": 5, "speed": 3}, "action.params.speed"),
    ],
)
def test_refusals_name_the_field(cap, cmd, params, field):
    with pytest.raises(InvalidError) as err:
        check_command(DEVICE, cap, cmd, params, "action")
    assert err.value.field == field
