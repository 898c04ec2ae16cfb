"""Checking command parameters against the schema a board declared for its capability (docs/protocol.md).

The same rules run on the board; here they refuse a job before it is saved and again before it runs.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidError
from ..model import CapabilityRead, DeviceRead

_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float), "integer": (int,), "string": (str,), "boolean": (bool,), "enum": (str, int),
    "list": (list,), "object": (dict,),
}


def check_command(device: DeviceRead, capability: str, command: str, params: dict[str, Any], where: str,
                  deferred: set[str] = frozenset()) -> None:
    """Raise InvalidError naming `where.capability`, `where.command` or `where.params.X`. Parameters in
    `deferred` get their value later (from a previous result): only their names are checked now."""
    cap: CapabilityRead | None = next((c for c in device.capabilities if c.name == capability), None)
    if cap is None:
        offered = ", ".join(c.name for c in device.capabilities) or "none declared yet"
        raise InvalidError(f"device {device.name!r} has no capability {capability!r} (it offers: {offered})",
                           field=f"{where}.capability")
    check_params(capability, command, cap.commands, params, where, deferred)


def check_params(capability: str, command: str, commands: dict[str, dict[str, Any]], params: dict[str, Any],
                 where: str, deferred: set[str] = frozenset()) -> None:
    """A command and its parameters against a capability's COMMANDS declaration."""
    schema = commands.get(command)
    if schema is None:
        raise InvalidError(f"capability {capability!r} has no command {command!r} "
                           f"(it has: {', '.join(sorted(commands))})", field=f"{where}.command")
    for key in params:
        if key not in schema:
            raise InvalidError(f"{capability}.{command} takes no parameter {key!r} "
                               f"(it takes: {', '.join(sorted(schema)) or 'none'})", field=f"{where}.params.{key}")
    for key, spec in schema.items():
        field = f"{where}.params.{key}"
        if key not in params:
            if spec.get("required", True):
                raise InvalidError(f"{capability}.{command} needs parameter {key!r}", field=field)
            continue
        if key not in deferred:
            _check_value(params[key], spec, field)


def _check_value(value: Any, spec: dict[str, Any], field: str) -> None:
    kind = spec.get("type", "string")
    allowed = _TYPES.get(kind)
    if allowed is None:
        raise InvalidError(f"the board declares an unknown parameter type {kind!r}", field=field)
    if isinstance(value, bool) and kind != "boolean" or not isinstance(value, allowed):
        raise InvalidError(f"expected {kind}, got {type(value).__name__}", field=field)
    if kind == "enum" and value not in spec.get("values", []):
        raise InvalidError(f"must be one of {spec.get('values')}, got {value!r}", field=field)
    if kind in ("number", "integer"):
        lo, hi = spec.get("min"), spec.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            unit = spec.get("unit", "")
            raise InvalidError(f"must be between {lo} and {hi}{unit}, got {value}{unit}", field=field)


def check_config(capability: str, schema: dict[str, dict[str, Any]] | None, cfg: dict[str, Any], where: str) -> None:
    """A capability's configuration against the CONFIG its module declares; InvalidError naming `where.KEY`.

    A module that declares no CONFIG takes any configuration (its setup() is the only check)."""
    if schema is None:
        return
    for key in cfg:
        if key not in schema:
            raise InvalidError(f"{capability} takes no configuration {key!r} "
                               f"(it takes: {', '.join(sorted(schema)) or 'none'})", field=f"{where}.{key}")
    for key, spec in schema.items():
        if key not in cfg:
            if spec.get("required", True) and "default" not in spec:
                raise InvalidError(f"{capability} needs configuration {key!r}", field=f"{where}.{key}")
            continue
        _check_value(cfg[key], spec, f"{where}.{key}")
