"""Follow-ups that use the result of the run before them: parameter references and conditions. Pure, no I/O.

A parameter `{"$result": "celsius"}` takes the value at that dotted path of the previous result; a path may
index lists (`rows.0.value`), and a reference may sit inside a list or object parameter
(`"args": [{"$result": "celsius"}, "balcony"]`). A condition (`when`) compares the value at its path with
`above`, `below` or `equals`; every comparison given must hold.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..errors import InvalidError
from ..model import Condition

REF = "$result"
_INDEX = re.compile(r"^-?[0-9]+$")  # a list index (not "--0", not "²", which isdigit() takes)


class MissingValue(LookupError):
    pass


def lookup(result: Any, path: str) -> Any:
    value = result
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _INDEX.match(part) and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise MissingValue(f"the previous result has no {path!r}")
    return value


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {REF} and isinstance(value[REF], str)


def _contains_ref(value: Any) -> bool:
    if is_ref(value):
        return True
    if isinstance(value, list):
        return any(_contains_ref(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_ref(v) for v in value.values())
    return False


def references(params: dict[str, Any]) -> set[str]:
    """Names of the parameters whose value (or a part of it) comes from the previous result."""
    return {key for key, value in params.items() if _contains_ref(value)}


def _fill(value: Any, result: Any, field: str) -> Any:
    if is_ref(value):
        try:
            return lookup(result, value[REF])
        except MissingValue as exc:
            raise InvalidError(str(exc), field=field) from None
    if isinstance(value, list):
        return [_fill(v, result, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _fill(v, result, f"{field}.{k}") for k, v in value.items()}
    return value


def substitute(params: dict[str, Any], result: Any) -> dict[str, Any]:
    """Concrete parameters for a follow-up; raises InvalidError naming the parameter when a path is missing."""
    return {key: _fill(value, result, f"params.{key}") for key, value in params.items()}


def holds(condition: Condition, result: Any) -> tuple[bool, str]:
    """Whether the condition holds on the result, and a sentence saying why (for the execution record)."""
    try:
        value = lookup(result, condition.path)
    except MissingValue as exc:
        return False, str(exc)
    checks = []
    if condition.above is not None:
        checks.append((_number(value) is not None and value > condition.above, f"above {condition.above}"))
    if condition.below is not None:
        checks.append((_number(value) is not None and value < condition.below, f"below {condition.below}"))
    if condition.equals is not msgspec.UNSET:
        checks.append((value == condition.equals, f"equal to {condition.equals!r}"))
    failed = [text for ok, text in checks if not ok]
    if failed:
        return False, f"{condition.path}={value!r} is not " + " and not ".join(failed)
    return True, f"{condition.path}={value!r}"


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
