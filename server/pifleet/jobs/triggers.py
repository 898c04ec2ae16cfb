"""When things fire: pure functions from a trigger and an instant to the next instant. No I/O.

Local clock times are resolved in the trigger's time zone with zoneinfo. Across DST changes:
- a local time that does not exist (spring forward, 02:30 in Europe/Berlin) runs at the same wall-clock
  distance after the gap, i.e. shifted forward by the gap (03:30 CEST), once;
- a local time that exists twice (fall back) runs once, at its first occurrence.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import InvalidError
from ..model import (
    AfterTrigger,
    AtTrigger,
    CronTrigger,
    DelayTrigger,
    EveryTrigger,
    FollowUpTrigger,
    ManualTrigger,
    NextTimeTrigger,
    SunTrigger,
    ThresholdTrigger,
    Trigger,
)
from ..settings import house_zone

Location = tuple[float, float]

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))
_SEARCH_DAYS = 366 * 5  # "0 0 29 2 1" (Feb 29th on a Monday) is rare, but exists within a few years


def zone(name: str | None, field: str = "trigger.tz") -> ZoneInfo:
    if name is None:
        return house_zone()  # a cron trigger without tz: the master's zone (settings)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of zones ("America"), too long
        raise InvalidError(f"unknown time zone {name!r}", field=field) from None


class Cron:
    """A parsed five-field cron expression (numbers, `*`, ranges `a-b`, lists `a,b`, steps `*/n`, `a-b/n`)."""

    def __init__(self, expr: str) -> None:
        parts = expr.split()
        if len(parts) != 5:
            raise InvalidError("cron needs five fields: minute hour day month weekday", field="trigger.expr")
        sets = [self._parse(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS)]
        self.minutes, self.hours, self.days, self.months, weekdays = sets
        self.times = [time(hour, minute) for hour in sorted(self.hours) for minute in sorted(self.minutes)]
        self.weekdays = {d % 7 for d in weekdays}  # 0 and 7 are both Sunday
        # cron's rule: when both day fields are restricted, a day matches if either matches
        self.day_any = parts[2] == "*"
        self.weekday_any = parts[4] == "*"

    @staticmethod
    def _parse(text: str, name: str, lo: int, hi: int) -> set[int]:
        values: set[int] = set()
        for item in text.split(","):
            rng, _, step_text = item.partition("/")
            try:
                step = int(step_text) if step_text else 1
                if rng == "*":
                    start, end = lo, hi
                elif "-" in rng:
                    a, b = rng.split("-", 1)
                    start, end = int(a), int(b)
                else:
                    start = int(rng)
                    end = hi if step_text else start
            except ValueError:
                raise InvalidError(
                    f"cron {name} field {text!r} is not a number, range or list", field="trigger.expr"
                ) from None
            if step < 1 or not (lo <= start <= end <= hi):
                raise InvalidError(f"cron {name} field {text!r} is outside {lo}-{hi}", field="trigger.expr")
            values.update(range(start, end + 1, step))
        return values

    def _day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.day_any and self.weekday_any:
            return True
        if self.day_any:
            return dow
        if self.weekday_any:
            return dom
        return dom or dow

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        local_start = after.astimezone(tz).date() - timedelta(days=1)  # a gap-shifted time may land a day later
        for offset in range(_SEARCH_DAYS):
            day = local_start + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for clock in self.times:
                when = resolve_local(day, clock, tz)
                if when > after:
                    return when
        return None

    def between(self, after: datetime, end: datetime, tz: ZoneInfo, limit: int) -> list[datetime]:
        """Every instant in (after, end], in order, at most `limit` — what next_after, called again and again,
        gives, in one pass over the days (the window's days are worked out once for every expression)."""
        found: set[datetime] = set()
        enough = limit + len(self.times)
        for day, month, dom, dow in _days(after, end, tz):
            if len(found) >= enough:
                break
            if month not in self.months:
                continue
            if not (self.day_any and self.weekday_any):  # cron's rule for the two day fields, as _day_matches
                on_dom, on_dow = dom in self.days, dow in self.weekdays
                if not (on_dow if self.day_any else on_dom if self.weekday_any else on_dom or on_dow):
                    continue
            for clock in self.times:
                when = resolve_local(day, clock, tz)
                if after < when <= end:
                    found.add(when)
        return sorted(found)[:limit]


@functools.lru_cache(maxsize=32)
def _days(after: datetime, end: datetime, tz: ZoneInfo) -> tuple[tuple[date, int, int, int], ...]:
    """The local days a window (after, end] can fire on — one before (a gap-shifted time may land a day later)
    and one after — each with its month, day of the month and weekday (0 = Sunday)."""
    day, last = after.astimezone(tz).date() - timedelta(days=1), end.astimezone(tz).date() + timedelta(days=1)
    days = []
    while day <= last:
        days.append((day, day.month, day.day, day.isoweekday() % 7))
        day += timedelta(days=1)
    return tuple(days)


@functools.lru_cache(maxsize=16384)
def cron(expr: str) -> Cron:
    """A parsed expression, parsed once (a timeline over 10,000 jobs asks for the same few thousand again and
    again); a Cron is never changed after it is built."""
    return Cron(expr)


@functools.lru_cache(maxsize=65536)
def resolve_local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of a local wall-clock time, by the DST rules in the module docstring."""
    naive = datetime.combine(day, clock)
    # fold=0 gives the first of two ambiguous times, and for a non-existent time the offset from before the
    # gap, which lands the instant after the gap by exactly the gap's length
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def sun_event(trigger: SunTrigger, day: date, location: Location) -> datetime | None:
    """The instant of the sun event on that (UTC) day plus the offset, or None where it does not happen
    (polar day or night)."""
    from astral import Observer, sun

    observer = Observer(latitude=location[0], longitude=location[1])
    try:
        instant = getattr(sun, trigger.event)(observer, day, tzinfo=UTC)
    except ValueError:  # the sun never rises (or sets) there on that day
        return None
    return instant + timedelta(seconds=trigger.offset_s)


def validate(trigger: Trigger, location: Location | None = None) -> None:
    """Refuse what decodes but cannot fire; raises InvalidError naming the field."""
    if isinstance(trigger, SunTrigger) and location is None:
        raise InvalidError(
            "sun triggers need the master's location: set it on the settings page, or "
            "`pifleet settings set latitude 52.52` and `pifleet settings set longitude 13.40` (PUT /api/settings)",
            field="trigger.event",
        )
    if isinstance(trigger, CronTrigger):
        zone(trigger.tz)
        cron(trigger.expr)
    elif isinstance(trigger, AtTrigger) and trigger.at.tzinfo is None:
        raise InvalidError("give the time with an offset or Z (2026-11-27T20:00:00+01:00)", field="trigger.at")


def validate_follow_up(trigger: FollowUpTrigger, index: int) -> None:
    if isinstance(trigger, NextTimeTrigger):
        zone(trigger.tz, field=f"follow_ups[{index}].trigger.tz")


def next_fire(
    trigger: Trigger,
    after: datetime,
    *,
    created: datetime | None = None,
    location: Location | None = None,
    memo: dict | None = None,
) -> datetime | None:
    """The first instant strictly after `after` at which the trigger fires, or None (never again, manual,
    or fired by another job's outcome). `memo`: a dict kept by the caller across calls with the same `after`
    (many jobs saved at once share a cron expression)."""
    if isinstance(trigger, AtTrigger):
        return trigger.at.astimezone(UTC) if trigger.at > after else None
    if isinstance(trigger, CronTrigger):
        if memo is None:
            return cron(trigger.expr).next_after(after, zone(trigger.tz))
        key = (trigger.expr, trigger.tz)  # `after` is the same for every call with this memo
        if key not in memo:
            memo[key] = cron(trigger.expr).next_after(after, zone(trigger.tz))
        return memo[key]
    if isinstance(trigger, EveryTrigger):
        origin = created or after
        step = timedelta(seconds=trigger.seconds)
        n = max(0, int((after - origin) / step)) + 1
        when = origin + n * step
        while when <= after:
            when += step
        return when.astimezone(UTC)
    if isinstance(trigger, SunTrigger):
        if location is None:
            return None
        day = after.astimezone(UTC).date() - timedelta(days=1)  # an offset may move an event across midnight
        for offset in range(_SEARCH_DAYS):
            when = sun_event(trigger, day + timedelta(days=offset), location)
            if when is not None and when > after:
                return when
        return None
    if isinstance(trigger, (ManualTrigger, AfterTrigger, ThresholdTrigger)):
        return None
    raise TypeError(f"unknown trigger {trigger!r}")


def occurrences(
    trigger: Trigger,
    after: datetime,
    end: datetime,
    *,
    limit: int,
    created: datetime | None = None,
    location: Location | None = None,
    memo: dict | None = None,
) -> list[datetime]:
    """The instants in (after, end] at which the trigger fires, in order, at most `limit` (a timeline). `memo`: a
    dict kept by the caller across calls with the same window and limit (jobs share cron expressions)."""
    if isinstance(trigger, CronTrigger):
        if memo is None:
            return cron(trigger.expr).between(after, end, zone(trigger.tz), limit)
        key = (trigger.expr, trigger.tz)  # the window is the same for every call with this memo
        if key not in memo:
            memo[key] = cron(trigger.expr).between(after, end, zone(trigger.tz), limit)
        return memo[key]
    if isinstance(trigger, EveryTrigger):  # evenly spaced: the first, then arithmetic
        first = next_fire(trigger, after, created=created)
        if first is None or first > end:
            return []
        step = timedelta(seconds=trigger.seconds)
        return [first + k * step for k in range(min(limit, (end - first) // step + 1))]
    found: list[datetime] = []
    while len(found) < limit:
        when = next_fire(trigger, after, created=created, location=location)
        if when is None or when > end:
            break
        found.append(when)
        after = when
    return found


def follow_up_time(trigger: FollowUpTrigger, finished: datetime) -> datetime:
    if isinstance(trigger, DelayTrigger):
        return (finished + timedelta(seconds=trigger.seconds)).astimezone(UTC)
    tz = zone(trigger.tz)
    hour, minute = (int(x) for x in trigger.time.split(":"))
    day = finished.astimezone(tz).date()
    for offset in range(3):
        when = resolve_local(day + timedelta(days=offset), time(hour, minute), tz)
        if when > finished:
            return when
    raise AssertionError("a clock time recurs within two days")
