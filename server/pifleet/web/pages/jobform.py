"""The job editor's form and the job document (docs/jobs.md), both ways: form fields → the same JSON document
`POST /api/jobs` takes, and a saved job → form fields to edit it.

Layer: adapter helper, pure (no I/O, no framework). Every input is named by the document path a problem
document's `field` uses (`trigger.expr`, `action.params.seconds`, `follow_ups[0].trigger.time`), so a refusal —
from the form's own reading, from msgspec's decoding, or from the job service's checks — lands at its input.
A command is chosen as "capability.command" in one select (`action.command`); its parameters' inputs come from
the schemas the fleet's boards declare for it (the same that the board page draws its controls from).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

TRIGGERS = ("manual", "at", "cron", "every", "sun", "after", "threshold")
FOLLOW_UP_TRIGGERS = ("delay", "next")
SUN_EVENTS = ("sunrise", "sunset", "dawn", "dusk", "noon")
OUTCOMES = ("success", "failure", "always")
TARGET_KINDS = ("device", "role", "group", "process")

Catalog = dict[str, dict[str, dict[str, Any]]]  # "capability.command" → its parameters' schemas
Form = dict[str, str]


class FormError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.detail = field, detail


def catalog(devices: list[Any]) -> Catalog:
    """Every command the fleet's boards declare, by "capability.command" (the first board's schema wins)."""
    out: Catalog = {}
    for device in devices:
        for cap in device.capabilities:
            for command, schema in (cap.commands or {}).items():
                out.setdefault(f"{cap.name}.{command}", schema if isinstance(schema, dict) else {})
    return dict(sorted(out.items()))


def _text(form: Form, key: str) -> str:
    return (form.get(key) or "").strip()


def _number(form: Form, key: str, integer: bool = False) -> float | int | None:
    text = _text(form, key)
    if not text:
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise FormError(key, f"{'a whole number' if integer else 'a number'}, not {text!r}") from None


def _put(doc: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        doc[key] = value


def _params(form: Form, prefix: str, schema: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, spec in schema.items():
        spec = spec if isinstance(spec, dict) else {}
        name, kind = f"{prefix}.params.{key}", spec.get("type")
        text = _text(form, name)
        if kind == "boolean":
            params[key] = text in ("on", "true", "1")
            continue
        if not text:
            continue  # missing: the job service says whether it is required, at this field
        if kind in ("number", "integer"):
            params[key] = _number(form, name, integer=kind == "integer")
        elif kind in ("list", "object"):
            try:
                params[key] = msgspec.json.decode(text)
            except msgspec.DecodeError:
                raise FormError(name, 'JSON, e.g. [1, 2] or {"a": 1}') from None
        elif kind == "enum" and any(isinstance(v, int | float) for v in spec.get("values") or []):
            params[key] = _number(form, name)
        else:
            params[key] = text
    return params


def _action(form: Form, prefix: str, commands: Catalog) -> dict[str, Any]:
    chosen = _text(form, f"{prefix}.command")
    capability, _, command = chosen.partition(".")
    if not capability or not command:
        raise FormError(f"{prefix}.command", "choose a command")
    return {"capability": capability, "command": command, "params": _params(form, prefix, commands.get(chosen, {}))}


def _at(form: Form) -> str:
    text, tz = _text(form, "trigger.at"), _text(form, "trigger.tz") or "UTC"
    if not text:
        raise FormError("trigger.at", "when: a date and time")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FormError("trigger.at", f"a date and time like 2026-12-24T18:00, not {text!r}") from None
    if when.tzinfo is None:
        try:
            when = when.replace(tzinfo=ZoneInfo(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise FormError("trigger.tz", f"unknown time zone {tz!r}") from None
    return when.isoformat()


def _trigger(form: Form) -> dict[str, Any]:
    kind = _text(form, "trigger.type") or "manual"
    t: dict[str, Any] = {"type": kind}
    if kind == "at":
        t["at"] = _at(form)
    elif kind == "cron":
        t["expr"] = _text(form, "trigger.expr")
        _put(t, "tz", _text(form, "trigger.tz"))
    elif kind == "every":
        _put(t, "seconds", _number(form, "trigger.seconds"))
    elif kind == "sun":
        t["event"] = _text(form, "trigger.event")
        _put(t, "offset_s", _number(form, "trigger.offset_s"))
    elif kind == "after":
        t["job"] = _text(form, "trigger.job")
        _put(t, "on", _text(form, "trigger.on"))
    elif kind == "threshold":
        for key in ("device", "capability", "command", "path"):
            t[key] = _text(form, f"trigger.{key}")
        for key in ("above", "below", "hysteresis", "for_s", "poll_s"):
            _put(t, key, _number(form, f"trigger.{key}"))
    return t


def _follow_ups(form: Form, commands: Catalog) -> list[dict[str, Any]]:
    out = []
    indices = sorted({int(m.group(1)) for k in form if (m := re.match(r"follow_ups\[(\d+)\]\.", k))})
    for i in indices:
        prefix = f"follow_ups[{i}]"
        if not _text(form, f"{prefix}.action.command"):
            continue  # the editor's empty row
        kind = _text(form, f"{prefix}.trigger.type") or "delay"
        trigger: dict[str, Any] = {"type": kind}
        if kind == "delay":
            _put(trigger, "seconds", _number(form, f"{prefix}.trigger.seconds"))
        else:
            trigger["time"] = _text(form, f"{prefix}.trigger.time")
            _put(trigger, "tz", _text(form, f"{prefix}.trigger.tz"))
        follow = {"action": _action(form, f"{prefix}.action", commands), "trigger": trigger}
        _put(follow, "on", _text(form, f"{prefix}.on"))
        out.append(follow)
    return out


def document(form: Form, commands: Catalog) -> dict[str, Any]:
    """The job document the form says, as `POST /api/jobs` takes it. FormError names a field it cannot read."""
    kind = _text(form, "target.kind") or "device"
    if kind not in TARGET_KINDS:
        raise FormError("target.kind", f"one of {', '.join(TARGET_KINDS)}")
    doc: dict[str, Any] = {
        "name": _text(form, "name"),
        "target": {kind: _text(form, "target.name")},
        "action": _action(form, "action", commands),
        "trigger": _trigger(form),
    }
    if follow_ups := _follow_ups(form, commands):
        doc["follow_ups"] = follow_ups
    retry: dict[str, Any] = {}
    _put(retry, "attempts", _number(form, "retry.attempts", integer=True))
    _put(retry, "backoff_s", _number(form, "retry.backoff_s"))
    if retry:
        doc["retry"] = retry
    misfire: dict[str, Any] = {}
    _put(misfire, "policy", _text(form, "misfire.policy"))
    _put(misfire, "grace_s", _number(form, "misfire.grace_s"))
    if misfire:
        doc["misfire"] = misfire
    _put(doc, "timeout_s", _number(form, "timeout_s"))
    _put(doc, "concurrency", _text(form, "concurrency"))
    if _text(form, "enabled") in ("false", "off", "0"):
        doc["enabled"] = False
    return doc


def form_of(spec: dict[str, Any]) -> Form:
    """A job document (as msgspec.to_builtins gives a JobSpec) as the editor's fields."""
    form: Form = {"name": spec["name"]}
    kind, name = next(iter((k, v) for k, v in spec["target"].items() if v is not None))
    form["target.kind"], form["target.name"] = kind, name

    def action(prefix: str, a: dict[str, Any]) -> None:
        form[f"{prefix}.command"] = f"{a['capability']}.{a['command']}"
        for key, value in (a.get("params") or {}).items():
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            form[f"{prefix}.params.{key}"] = "on" if value is True else "" if value is False else text

    action("action", spec["action"])
    for key, value in spec["trigger"].items():
        if value is not None:
            form[f"trigger.{key}"] = str(value)
    if spec["trigger"]["type"] == "at":  # a datetime-local field holds no offset: the instant in UTC
        at = datetime.fromisoformat(spec["trigger"]["at"]).astimezone(UTC)
        form["trigger.at"], form["trigger.tz"] = at.replace(tzinfo=None).isoformat(timespec="seconds"), "UTC"
    for i, f in enumerate(spec.get("follow_ups") or []):
        action(f"follow_ups[{i}].action", f["action"])
        for key, value in f["trigger"].items():
            form[f"follow_ups[{i}].trigger.{key}"] = str(value)
        form[f"follow_ups[{i}].on"] = f.get("on", "success")
    for section in ("retry", "misfire"):
        for key, value in (spec.get(section) or {}).items():
            form[f"{section}.{key}"] = str(value)
    if spec.get("timeout_s") is not None:
        form["timeout_s"] = str(spec["timeout_s"])
    form["concurrency"] = spec.get("concurrency", "queue")
    form["enabled"] = "true" if spec.get("enabled", True) else "false"
    return form


_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def decode_field(exc: msgspec.ValidationError) -> str:
    """The field msgspec's message names (`... - at `$.trigger.expr``), as the API's problem documents do."""
    message = str(exc)
    key = m.group(1) if (m := _PATH.search(message)) else ""
    if missing := _MISSING.search(message):
        key = f"{key}.{missing.group(1)}" if key else missing.group(1)
    return key


def input_for(field: str | None) -> str:
    """The input a refusal at `field` is shown at: the field itself, or the input that stands for it."""
    if not field:
        return ""
    field = re.sub(r"\.capability$", ".command", field)  # capability and command are one select
    if field == "target" or re.fullmatch(r"target\.(device|role|group|process)", field):
        return "target.name"
    if re.fullmatch(r"(follow_ups\[\d+\]\.)?trigger\.type", field) or field == "trigger":
        return "trigger.type"
    return field
