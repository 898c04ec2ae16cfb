"""Checking command parameters against the schema a board declared for its capability (docs/protocol.md).

The same rules run on the board; here they refuse a job before it is saved and again before it runs.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidError
from ..model import CapabilityRead, DeviceRead
from . import pins

_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "integer": (int,),
    "string": (str,),
    "boolean": (bool,),
    "enum": (str, int),
    "list": (list,),
    "object": (dict,),
}


def check_command(
    device: DeviceRead,
    capability: str,
    command: str,
    params: dict[str, Any],
    where: str,
    deferred: set[str] = frozenset(),
) -> None:
    """Raise InvalidError naming `where.capability`, `where.command` or `where.params.X`. Parameters in
    `deferred` get their value later (from a previous result): only their names are checked now."""
    cap: CapabilityRead | None = next((c for c in device.capabilities if c.name == capability), None)
    if cap is None:
        offered = ", ".join(c.name for c in device.capabilities) or "none declared yet"
        raise InvalidError(
            f"device {device.name!r} has no capability {capability!r} (it offers: {offered})",
            field=f"{where}.capability",
        )
    check_params(capability, command, cap.commands, params, where, deferred)


def check_params(
    capability: str,
    command: str,
    commands: dict[str, dict[str, Any]],
    params: dict[str, Any],
    where: str,
    deferred: set[str] = frozenset(),
) -> None:
    """A command and its parameters against a capability's COMMANDS declaration."""
    schema = commands.get(command) if isinstance(commands, dict) else None
    if schema is None:
        raise InvalidError(
            f"capability {capability!r} has no command {command!r} "
            f"(it has: {', '.join(sorted(commands)) if isinstance(commands, dict) else 'none'})",
            field=f"{where}.command",
        )
    if not isinstance(schema, dict):
        raise InvalidError(f"the board declares {capability}.{command} malformed", field=f"{where}.command")
    for key in params:
        if key not in schema:
            raise InvalidError(
                f"{capability}.{command} takes no parameter {key!r} (it takes: {', '.join(sorted(schema)) or 'none'})",
                field=f"{where}.params.{key}",
            )
    for key, spec in schema.items():
        field = f"{where}.params.{key}"
        if key not in params:
            if not isinstance(spec, dict) or spec.get("required", True):
                raise InvalidError(f"{capability}.{command} needs parameter {key!r}", field=field)
            continue
        if key not in deferred:
            _check_value(params[key], spec, field)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_value(value: Any, spec: dict[str, Any], field: str) -> None:
    # the schema comes from a board (/cap) or a module's CONFIG: a malformed one refuses, it does not crash
    if not isinstance(spec, dict):
        raise InvalidError("the board declares this parameter malformed", field=field)
    kind = spec.get("type")  # required, as on the board (agent/schema.py): no silent default
    allowed = _TYPES.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        what = f"an unknown parameter type {kind!r}" if kind is not None else "this parameter without a type"
        raise InvalidError(f"the board declares {what}", field=field)
    if isinstance(value, bool) and kind != "boolean" or not isinstance(value, allowed):
        raise InvalidError(f"expected {kind}, got {type(value).__name__}", field=field)
    if kind == "enum" and (not isinstance(spec.get("values", []), list) or value not in spec.get("values", [])):
        raise InvalidError(f"must be one of {spec.get('values')}, got {value!r}", field=field)
    if kind in ("number", "integer"):
        lo, hi = spec.get("min"), spec.get("max")
        if not all(x is None or _number(x) for x in (lo, hi)):
            raise InvalidError(f"the board declares a malformed range {lo!r}..{hi!r}", field=field)
        if lo is not None and value < lo or hi is not None and value > hi:
            unit = spec.get("unit", "")
            raise InvalidError(f"must be between {lo} and {hi}{unit}, got {value}{unit}", field=field)


def check_config(
    capability: str, schema: dict[str, dict[str, Any]] | None, cfg: dict[str, Any], where: str, chip: str | None = None
) -> None:
    """A capability's configuration against the CONFIG its module declares; InvalidError naming `where.KEY`.
    A field declared {"pin": USE} must be a GPIO the chip (default: the plain ESP32) allows for USE (pins.py).

    A module that declares no CONFIG takes any configuration (its setup() is the only check)."""
    if schema is None:
        return
    for key in cfg:
        if key not in schema:
            raise InvalidError(
                f"{capability} takes no configuration {key!r} (it takes: {', '.join(sorted(schema)) or 'none'})",
                field=f"{where}.{key}",
            )
    for key, spec in schema.items():
        if key not in cfg:
            if not isinstance(spec, dict) or spec.get("required", True) and "default" not in spec:
                raise InvalidError(f"{capability} needs configuration {key!r}", field=f"{where}.{key}")
            continue
        _check_value(cfg[key], spec, f"{where}.{key}")
        if "pin" in spec:
            _check_pin(cfg[key], spec["pin"], f"{where}.{key}", chip)


def _check_pin(value: Any, use: Any, field: str, chip: str | None) -> None:
    if use not in pins.USES:
        raise InvalidError(f"the module declares an unknown pin use {use!r}", field=field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidError(f"expected a GPIO number, got {type(value).__name__}", field=field)
    why = pins.problem(value, use, chip)
    if why:
        raise InvalidError(why, field=field)
