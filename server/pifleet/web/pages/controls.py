"""What a board page draws for a command: one control per parameter, chosen from the schema the board declares
for it (its capability's COMMANDS, docs/protocol.md) — no template decides by itself what a parameter is.

Layer: adapter helper, pure (no I/O, no framework). The rules:
- no parameters: the command is a button;
- `enum`: a select of its values; `boolean`: a checkbox; `string`: a text field;
- a number whose unit is a time (s, ms, min, h): a duration field with that unit;
- a number with both bounds (and required): a slider with its value shown, in its unit;
- any other number: a number field; `list`/`object`: a JSON text field (checked by the master when sent).
"""

from __future__ import annotations

from typing import Any, NamedTuple

DURATION_UNITS = ("s", "ms", "min", "h")


class Control(NamedTuple):
    name: str
    kind: str  # select | checkbox | text | duration | slider | number | json
    type: str  # the declared type, for the page's script to send the right JSON (number, integer, …)
    required: bool
    unit: str = ""
    low: float | None = None
    high: float | None = None
    step: str = "any"
    values: tuple[Any, ...] = ()
    value: Any = None  # what the control starts at


class Command(NamedTuple):
    capability: str
    name: str
    controls: list[Control]


def control(name: str, spec: Any) -> Control:
    spec = spec if isinstance(spec, dict) else {}
    kind = spec.get("type") if isinstance(spec.get("type"), str) else "string"
    required = bool(spec.get("required", True))
    unit = str(spec.get("unit", "") or "")
    if kind == "enum":
        values = tuple(spec.get("values") or ()) if isinstance(spec.get("values"), list) else ()
        return Control(name, "select", kind, required, unit, values=values, value=values[0] if values else None)
    if kind == "boolean":
        return Control(name, "checkbox", kind, required, value=False)
    if kind in ("number", "integer"):
        low, high = _num(spec.get("min")), _num(spec.get("max"))
        step = "1" if kind == "integer" else "any"
        if unit in DURATION_UNITS:
            return Control(name, "duration", kind, required, unit, low, high, step)
        if low is not None and high is not None and required:
            if kind == "number":
                step = _step(low, high)
            return Control(name, "slider", kind, required, unit, low, high, step, value=_middle(low, high, kind))
        return Control(name, "number", kind, required, unit, low, high, step)
    if kind in ("list", "object"):
        return Control(name, "json", kind, required)
    return Control(name, "text", kind, required)


def commands(capabilities: list[Any]) -> list[Command]:
    """Every command of every capability a device declares (CapabilityRead), in declared order."""
    out = []
    for cap in capabilities:
        for name, schema in (cap.commands or {}).items():
            params = schema if isinstance(schema, dict) else {}
            out.append(Command(cap.name, name, [control(k, v) for k, v in params.items()]))
    return out


def _num(x: Any) -> float | None:
    return x if isinstance(x, int | float) and not isinstance(x, bool) else None


def _step(low: float, high: float) -> str:
    span = high - low
    for step in (1, 0.1, 0.01):
        if span / step >= 50:
            return str(step)
    return "any"


def _middle(low: float, high: float, kind: str) -> float:
    middle = (low + high) / 2
    return int(middle) if kind == "integer" else middle
