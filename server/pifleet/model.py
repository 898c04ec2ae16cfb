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
Seconds = Annotated[float, Meta(ge=0.001, le=366 * 86400)]  # from 1 ms: shorter is no interval at all
ClockTime = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64)]


# ---- devices -------------------------------------------------------------------------------------------------


class CapabilityRead(Struct):
    name: str
    version: str
    commands: dict[str, dict[str, dict[str, Any]]]
    module: str | None = None  # the file it runs from on the board: NAME_HASHPREFIX


class SyncRead(Struct):
    """Whether a board runs what its role says: pending (waits for the board), updating, in_sync, failed."""

    state: Literal["pending", "updating", "in_sync", "failed"]
    reason: str
    updated_at: datetime


class StateRead(Struct):
    """A capability's live state: its values as the board last reported them, when, and what its module declares
    about each value (type, unit; its STATE, or else its TELEMETRY)."""

    values: dict[str, Any]
    at: datetime
    declared: dict[str, dict[str, Any]] = {}


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
    sync: SyncRead | None = None
    role_config: dict[str, dict[str, Any]] = {}
    state: dict[str, StateRead] = {}  # capability -> its live state (one device's answer only; {} in lists)
    safe_mode: str | None = None  # why the board runs in safe mode (no role modules), as its registration said
    site: str = "default"  # the site whose master paired the board and holds its OSCORE context (sql/0018)


class GroupWrite(Struct, forbid_unknown_fields=True):
    devices: Annotated[list[Name], Meta(max_length=1000)]


class GroupRead(Struct):
    name: str
    devices: list[str]


class RoleSpec(Struct, forbid_unknown_fields=True):
    """A role as a person writes it (docs/modules.md, "A role"): the modules a board runs, each with its configuration,
    and the role's own jobs (JobSpecs without a target: they target the role)."""

    description: Annotated[str, Meta(max_length=500)] = ""
    modules: Annotated[dict[Name, dict[str, Any]], Meta(max_length=32)] = {}
    jobs: Annotated[list[dict[str, Any]], Meta(max_length=64)] = []


class RoleRead(Struct):
    name: str
    description: str
    capabilities: list[str]
    defined: bool = False
    modules: dict[str, dict[str, Any]] = {}
    jobs: list[str] = []  # names of the jobs the role defines
    devices: list[str] = []  # boards with this role


class RoleAssign(Struct, forbid_unknown_fields=True):
    """Give boards a role; `config` is their own configuration on top of the role's ({capability: {k: v}})."""

    devices: Annotated[list[Name], Meta(min_length=1, max_length=1000)]
    config: dict[Name, dict[str, Any]] | None = None


class RolloutRead(Struct):
    id: int
    module: str
    sha256: str
    state: Literal["running", "succeeded", "halted"]
    devices: list[str]  # names, in rollout order: the first one goes alone
    done: list[str]
    skipped: list[str]
    failed: str | None
    reason: str
    created_at: datetime
    finished_at: datetime | None


# ---- jobs ----------------------------------------------------------------------------------------------------


class Target(Struct, forbid_unknown_fields=True):
    """Exactly one of: a device (board) by name, every device with a role, a named group, a process target."""

    device: Name | None = None
    role: Name | None = None
    group: Name | None = None
    process: Name | None = None

    @property
    def kind(self) -> str:
        given = [k for k in ("device", "role", "group", "process") if getattr(self, k) is not None]
        return given[0] if len(given) == 1 else ""

    @property
    def name(self) -> str:
        return getattr(self, self.kind)

    @property
    def fans_out(self) -> bool:
        return self.kind in ("role", "group")

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class Action(Struct, forbid_unknown_fields=True):
    capability: Name
    command: Name
    params: dict[str, Any] = {}


class AtTrigger(Struct, tag="at", tag_field="type", forbid_unknown_fields=True):
    """Once, at an instant (ISO 8601 with an offset)."""

    at: datetime


class CronTrigger(Struct, tag="cron", tag_field="type", forbid_unknown_fields=True):
    """Five-field cron (minute hour day-of-month month day-of-week) in a time zone (absent: the master's, as its
    settings say)."""

    expr: Annotated[str, Meta(min_length=9, max_length=120)]
    tz: TimeZone | None = None


class EveryTrigger(Struct, tag="every", tag_field="type", forbid_unknown_fields=True):
    seconds: Seconds


class ManualTrigger(Struct, tag="manual", tag_field="type", forbid_unknown_fields=True):
    """Runs only when asked (API `POST /api/jobs/{name}/run`)."""


class SunTrigger(Struct, tag="sun", tag_field="type", forbid_unknown_fields=True):
    """Every day at sunrise, sunset, dawn, dusk or noon at the master's location (settings), with an offset."""

    event: Literal["sunrise", "sunset", "dawn", "dusk", "noon"]
    offset_s: Annotated[float, Meta(ge=-12 * 3600, le=12 * 3600)] = 0.0


class AfterTrigger(Struct, tag="after", tag_field="type", forbid_unknown_fields=True):
    """Whenever another job's own run finishes with the given outcome."""

    job: Name
    on: Literal["success", "failure", "always"] = "success"


class ThresholdTrigger(Struct, tag="threshold", tag_field="type", forbid_unknown_fields=True):
    """When a sensor value crosses a limit: the master reads `device`'s `capability.command` every `poll_s`,
    takes the value at `path` of the result, and fires once per crossing of `above` (or `below`) that lasts
    `for_s`; it re-arms only once the value is back past the limit by `hysteresis`."""

    device: Name
    capability: Name
    command: Name
    path: Annotated[str, Meta(min_length=1, max_length=200)]
    above: float | None = None
    below: float | None = None
    hysteresis: Annotated[float, Meta(ge=0)] = 0.0
    for_s: Annotated[float, Meta(ge=0, le=86400)] = 0.0
    poll_s: Annotated[float, Meta(ge=0.2, le=86400)] = 60.0


Trigger = AtTrigger | CronTrigger | EveryTrigger | ManualTrigger | SunTrigger | AfterTrigger | ThresholdTrigger


class DelayTrigger(Struct, tag="delay", tag_field="type", forbid_unknown_fields=True):
    """A follow-up that runs this long after the job before it finished."""

    seconds: Seconds


class NextTimeTrigger(Struct, tag="next", tag_field="type", forbid_unknown_fields=True):
    """A follow-up at the next occurrence of a clock time after the job before it finished (07:00 next morning)."""

    time: ClockTime
    tz: TimeZone = "UTC"


FollowUpTrigger = DelayTrigger | NextTimeTrigger


class Condition(Struct, forbid_unknown_fields=True):
    """A test on the previous run's result: `path` is a dotted path into it (`celsius`, `rows.0.value`)."""

    path: Annotated[str, Meta(min_length=1, max_length=200)]
    above: float | None = None
    below: float | None = None
    equals: Any | msgspec.UnsetType = msgspec.UNSET


class FollowUp(Struct, forbid_unknown_fields=True):
    """An action planned when the job's own run finishes. A parameter may take a value from that run's result:
    `{"$result": "celsius"}`. `when` makes the follow-up conditional on the result."""

    action: Action
    trigger: FollowUpTrigger
    on: Literal["success", "failure", "always"] = "success"
    target: Target | None = None  # default: the job's own target
    when: Condition | None = None


class RetryPolicy(Struct, forbid_unknown_fields=True):
    attempts: Annotated[int, Meta(ge=1, le=20)] = 1
    backoff_s: Annotated[float, Meta(ge=0, le=86400)] = 10.0


class MisfirePolicy(Struct, forbid_unknown_fields=True):
    """What to do with a run that could not start on time (the master was down, the queue was busy):
    `run_late` runs it if it is at most `grace_s` late, `skip` runs it only if it is on time (within 5 s);
    otherwise it is recorded as `missed`."""

    policy: Literal["run_late", "skip"] = "run_late"
    grace_s: Annotated[float, Meta(ge=0, le=7 * 86400)] = 3600.0


class JobSpec(Struct, forbid_unknown_fields=True):
    """A job as a person writes it (docs/jobs.md)."""

    name: Name
    target: Target
    action: Action
    trigger: Trigger
    follow_ups: Annotated[list[FollowUp], Meta(max_length=16)] = []
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    misfire: MisfirePolicy = msgspec.field(default_factory=MisfirePolicy)
    # How long to wait for the board's answer, beyond the command's own `seconds`; default: the master's setting.
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] | None = None
    # Another run on the same device still running: wait for it, send anyway (the board replaces what it
    # was doing), or record this one as skipped.
    concurrency: Literal["queue", "replace", "refuse"] = "queue"
    enabled: bool = True
    # How long after a timed run's instant the board waits for the master before it runs the run itself, when the
    # master does not answer (docs/jobs.md, "When the master is away"); null: never on the board.
    autonomy_grace_s: Annotated[int, Meta(ge=0, le=86400)] | None = 30


class JobRead(Struct):
    id: int
    name: str
    enabled: bool
    paused: bool
    spec: JobSpec
    next_run: datetime | None
    created_at: datetime
    updated_at: datetime


ExecutionState = Literal[
    "scheduled", "dispatched", "running", "succeeded", "failed", "timed_out", "skipped", "missed", "cancelled"
]
FINAL_STATES = ("succeeded", "failed", "timed_out", "skipped", "missed", "cancelled")


class ExecutionRead(Struct):
    id: str
    job: str | None  # None: a command sent at once (source person or token), not a job's run
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
    source: Literal["job", "person", "token"] = "job"  # who started it: the job engine, or a command sent at once
    actor: str | None = None  # a command's sender: the person's or the API token's name
    ran_by: Literal["master", "board"] = "master"  # board: it ran it by itself while the master was away


class CommandRequest(Struct, forbid_unknown_fields=True):
    """POST /api/devices|roles|groups/NAME/commands: run one command now, checked like a job's action."""

    capability: Name
    command: Name
    params: dict[str, Any] = {}
    # how long the master waits for the board's answer; default: the master's command timeout plus `seconds`
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] | None = None


class CommandRead(Struct):
    """A command to a role or group: its own execution (settled by its devices' runs) and each device's run."""

    execution: ExecutionRead
    devices: list[ExecutionRead]


# ---- the master's settings ----------------------------------------------------------------------------------

Latitude = Annotated[float, Meta(ge=-90, le=90)]
Longitude = Annotated[float, Meta(ge=-180, le=180)]


class SettingsRead(Struct):
    """GET /api/settings: where the house is (sun triggers) and the time zone the dashboard and CLI show times in."""

    latitude: float | None
    longitude: float | None
    timezone: str
    updated_at: datetime | None = None  # the last change made through the API (None: all defaults)
    updated_by: str | None = None


class SettingsWrite(Struct, forbid_unknown_fields=True):
    """PUT /api/settings: only the keys given change; null clears a location coordinate."""

    latitude: Latitude | None | msgspec.UnsetType = msgspec.UNSET
    longitude: Longitude | None | msgspec.UnsetType = msgspec.UNSET
    timezone: TimeZone | None | msgspec.UnsetType = msgspec.UNSET


class DrySend(Struct):
    device: str
    online: bool
    uri: str
    payload: dict[str, Any]


class DryRun(Struct):
    """What a run of the job would send now (one request per device of its target), without sending it."""

    job: str
    target: str
    sends: list[DrySend]
    next_runs: list[datetime]


class TimelineEntry(Struct, gc=False):
    """One run expected in a time window: `planned` (a row in job_executions) or `projected` (computed from the
    trigger, not planned yet — the next occurrences of a cron job, the follow-ups they will bring). Not tracked by
    the cyclic garbage collector (it refers to no object that could refer back): a 7-day timeline makes 70,000 of
    them, and tracked they started collections that walked the whole master after every timeline."""

    at: datetime
    job: str
    device: str | None
    capability: str
    command: str
    params: dict[str, Any]
    kind: Literal["planned", "projected"]
    follow_up: bool


# ---- adoption ------------------------------------------------------------------------------------------------


class AdoptionRead(Struct):
    """A board that announced itself without an identity, and what became of it."""

    id: int
    mac: str
    chip: str
    address: str | None
    port: int | None
    firmware: str | None
    mpy: int | None
    agent_version: str | None
    state: Literal["waiting", "adopted", "rejected", "locked"]
    attempts: int
    device_id: str | None
    first_seen: datetime
    last_seen: datetime
    decided_at: datetime | None
    delivered_at: datetime | None


class AdoptionConfirm(Struct, forbid_unknown_fields=True):
    # the 8 characters the board's console prints (Crockford's base 32: no I, L, O, U, read as 1, 1, 0), in any
    # case, with dashes or spaces anywhere
    code: Annotated[str, Meta(max_length=32, pattern=r"^[ -]*([0-9A-HJ-NP-TV-Za-hj-np-tv-zIiLlOo][ -]*){8}$")]
    name: Name | None = None
    role: Name | None = None


class ReadingRead(Struct):
    device: str
    capability: str
    path: str
    value: float
    at: datetime


class BucketRead(Struct):
    """The readings of a series within [at, at + the bucket's width): how many, least, greatest, mean."""

    at: datetime
    count: int
    min: float
    max: float
    avg: float


class SeriesRead(Struct):
    capability: str
    path: str
    unit: str | None  # as the module the board runs declares it (TELEMETRY or STATE)
    buckets: list[BucketRead]  # oldest first; a bucket without readings is absent (a gap)


class ReadingsRange(Struct):
    """A device's readings over a range, downsampled by the database (the charts' query): at most 240 buckets."""

    device: str
    range: Literal["24h", "7d", "30d"]
    since: datetime
    until: datetime
    bucket_s: int
    series: list[SeriesRead]


class ModuleUpload(Struct, forbid_unknown_fields=True):
    """A role module's source, as uploaded (`pifleet module upload blind.py`)."""

    filename: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,31}\.py$")]
    source: Annotated[str, Meta(min_length=1, max_length=64 * 1024)]


class ModuleRead(Struct):
    id: int
    name: str
    sha256: str  # the version: the content's hash
    size: int
    declared: dict[str, Any]  # NAME, VERSION and command names as the module declares them
    latest: bool
    created_at: datetime
    stem: str = ""  # its file on a board: NAME_HASHPREFIX
    rollout: int | None = None  # the rollout this upload started, if any board's role uses the module
