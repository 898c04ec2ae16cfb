"""Follow-ups using the previous result: references and conditions. Pure functions."""

import pytest

from pifleet.errors import InvalidError
from pifleet.jobs.results import holds, references, substitute
from pifleet.model import Condition

RESULT = {"celsius": 29.5, "rows": [{"id": 7, "value": "x"}], "ok": True}


def test_references_are_found_and_filled():
    params = {"direction": "down", "seconds": {"$result": "celsius"}, "row": {"$result": "rows.0.id"}}
    assert references(params) == {"seconds", "row"}
    assert substitute(params, RESULT) == {"direction": "down", "seconds": 29.5, "row": 7}
    assert substitute({"plain": {"not": "a ref"}}, RESULT) == {"plain": {"not": "a ref"}}


def test_a_missing_path_names_the_parameter():
    with pytest.raises(InvalidError) as err:
        substitute({"seconds": {"$result": "humidity"}}, RESULT)
    assert err.value.field == "params.seconds"


@pytest.mark.parametrize(
    "condition, expected",
    [
        (Condition(path="celsius", above=28), True),
        (Condition(path="celsius", above=30), False),
        (Condition(path="celsius", above=28, below=29), False),
        (Condition(path="celsius", below=30), True),
        (Condition(path="ok", equals=True), True),
        (Condition(path="rows.0.value", equals="y"), False),
        (Condition(path="nothing", above=1), False),
        (Condition(path="ok", above=0), False),  # booleans are not numbers
    ],
)
def test_conditions(condition, expected):
    ok, why = holds(condition, RESULT)
    assert ok is expected, why
    assert condition.path in why


def test_references_inside_lists_and_objects():
    params = {
        "sql": "insert into t values ($1, $2)",
        "args": [{"$result": "celsius"}, "balcony"],
        "meta": {"id": {"$result": "rows.0.id"}},
    }
    assert references(params) == {"args", "meta"}
    assert substitute(params, RESULT) == {
        "sql": "insert into t values ($1, $2)",
        "args": [29.5, "balcony"],
        "meta": {"id": 7},
    }
    with pytest.raises(InvalidError) as err:
        substitute({"args": [1, {"$result": "nope"}]}, RESULT)
    assert err.value.field == "params.args[1]"
