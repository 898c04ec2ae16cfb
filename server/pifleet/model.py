"""The shapes shared by API, gateway and jobs: one msgspec Struct per wire shape, validated once at each edge.

No I/O here. Field constraints live in the types (msgspec.Meta), so a malformed document is refused at decode
time with the path of the offending field (`$.trigger.expr`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Seconds = Annotated[float, Meta(gt=0, le=366 * 86400)]
ClockTime = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64)]


# ---- devices -------------------------------------------------------------------------------------------------


class CapabilityRead(Struct):
    name: str
    version: str
    commands: dict[str, dict[str, dict[str, Any]]]


class DeviceRead(Struct):
    id: str
    name: str
    kind: str
    role: str | None
    online: bool
    last_seen: datetime | None
    address: str | None
    port: int | None
    firmware: str | None
    mpy: int | None
    agent_version: str | None
    unreachable: str | None
    capabilities: list[CapabilityRead]


class RoleRead(Struct):
    name: str
    description: str
    capabilities: list[str]


# ---- jobs ----------------------------------------------------------------------------------------------------


class Target(Struct, forbid_unknown_fields=True):
    device: Name  # a device's name; later: role, group, process


class Action(Struct, forbid_unknown_fields=True):
    capability: Name
    command: Name
    params: dict[str, Any] = {}


class AtTrigger(Struct, tag="at", tag_field="type", forbid_unknown_fields=True):
    """Once, at an instant (ISO 8601 with an offset)."""

    at: datetime


class CronTrigger(Struct, tag="cron", tag_field="type", forbid_unknown_fields=True):
    """Five-field cron (minute hour day-of-month month day-of-week) in a time zone."""

    expr: Annotated[str, Meta(min_length=9, max_length=120)]
    tz: TimeZone = "UTC"


class EveryTrigger(Struct, tag="every", tag_field="type", forbid_unknown_fields=True):
    seconds: Seconds


class ManualTrigger(Struct, tag="manual", tag_field="type", forbid_unknown_fields=True):
    """Runs only when asked (API `POST /api/jobs/{name}/run`)."""


Trigger = AtTrigger | CronTrigger | EveryTrigger | ManualTrigger


class DelayTrigger(Struct, tag="delay", tag_field="type", forbid_unknown_fields=True):
    """A follow-up that runs this long after the job before it finished."""

    seconds: Seconds


class NextTimeTrigger(Struct, tag="next", tag_field="type", forbid_unknown_fields=True):
    """A follow-up at the next occurrence of a clock time after the job before it finished (07:00 next morning)."""

    time: ClockTime
    tz: TimeZone = "UTC"


FollowUpTrigger = DelayTrigger | NextTimeTrigger


class FollowUp(Struct, forbid_unknown_fields=True):
    action: Action
    trigger: FollowUpTrigger
    on: Literal["success", "failure", "always"] = "success"
    target: Target | None = None  # default: the job's own target


class RetryPolicy(Struct, forbid_unknown_fields=True):
    attempts: Annotated[int, Meta(ge=1, le=20)] = 1
    backoff_s: Annotated[float, Meta(ge=0, le=86400)] = 10.0


class JobSpec(Struct, forbid_unknown_fields=True):
    """A job as a person writes it (docs/jobs.md)."""

    name: Name
    target: Target
    action: Action
    trigger: Trigger
    follow_ups: Annotated[list[FollowUp], Meta(max_length=16)] = []
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    enabled: bool = True


class JobRead(Struct):
    id: int
    name: str
    enabled: bool
    spec: JobSpec
    next_run: datetime | None
    created_at: datetime
    updated_at: datetime


ExecutionState = Literal["scheduled", "running", "succeeded", "failed", "cancelled"]


class ExecutionRead(Struct):
    id: str
    job: str
    parent_id: str | None
    step: int
    device: str | None
    capability: str
    command: str
    params: dict[str, Any]
    state: ExecutionState
    scheduled_for: datetime
    attempt: int
    max_attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: str | None
