"""The timeline's entries (JobService.timeline): planned runs and the projected occurrences of each job's trigger
with the follow-ups they would bring, in order of time, then job. Pure and synchronous: everything is read by the
caller first.

Layer: service (jobs); no I/O, no litestar. Why it is shaped as it is: 10,000 daily jobs give about 70,000 entries
over a week, and every Python step per entry shows in GET /api/timeline. Entries go straight into one list per
instant; the jobs are walked in name order, so an instant's projected entries arrive already in job order and only
an instant that also holds planned runs is sorted (stably, so a job's planned run stays before its projections).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..model import JobSpec, TimelineEntry
from . import triggers


def entries(
    start: datetime,
    end: datetime,
    rows: Iterable[Any],
    active: Sequence[tuple[Any, JobSpec]],
    members: dict[tuple[str | None, str | None], list[str]],
    device: str | None,
    limit_per_job: int,
    location: triggers.Location | None,
) -> list[TimelineEntry]:
    """`rows`: planned runs (at, job, device, capability, command, params, follow_up), already only `device`'s when
    one is given; `active`: (row with created_at, spec) of each enabled job; `members`: the device names of each
    (role, group) target."""
    by_at: dict[datetime, list[TimelineEntry]] = {}
    planned: dict[str, set[datetime]] = {}
    for r in rows:  # a role/group run has no device: it is projected per device below
        at, job, follow_up = r["at"], r["job"], r["follow_up"]
        entry = TimelineEntry(at, job, r["device"], r["capability"], r["command"], r["params"], "planned", follow_up)
        if (group := by_at.get(at)) is None:
            by_at[at] = [entry]
        else:
            group.append(entry)
        planned.setdefault(job, set()).add(at)
    late = set(by_at)  # instants holding planned runs (in no particular job order): sorted at the end
    memo: dict = {}
    for row, spec in sorted(active, key=lambda a: a[1].name):
        whens = triggers.occurrences(
            spec.trigger, start, end, limit=limit_per_job, created=row["created_at"], location=location, memo=memo
        )
        if not whens:
            continue
        target = spec.target
        single = target.device or target.process  # else a role or group (the kind property costs, 10,000 times)
        names = [single] if single else members[target.role, target.group]
        action, job = spec.action, spec.name
        capability, command, params = action.capability, action.command, action.params
        follows = [f for f in spec.follow_ups if f.on in ("success", "always")]
        lasts = timedelta(seconds=float(action.params.get("seconds", 0) or 0)) if follows else None
        skip = planned.get(job, ()) if single else ()
        shown = names if device is None else [n for n in names if n == device]
        for when in whens:
            if shown and when not in skip:
                if (group := by_at.get(when)) is None:
                    group = by_at[when] = []
                for name in shown:
                    group.append(TimelineEntry(when, job, name, capability, command, params, "projected", False))
            if not follows:
                continue
            for follow in follows:
                at = triggers.follow_up_time(follow.trigger, when + lasts)
                if at > end:
                    continue
                fa = follow.action
                for name in names:
                    on = follow.target.name if follow.target else name
                    if device is not None and on != device:
                        continue
                    entry = TimelineEntry(at, job, on, fa.capability, fa.command, fa.params, "projected", True)
                    if (group := by_at.get(at)) is None:
                        by_at[at] = [entry]
                    else:
                        group.append(entry)
    ordered: list[TimelineEntry] = []
    for at in sorted(by_at):
        group = by_at[at]
        if at in late and len(group) > 1:
            group.sort(key=_job)
        ordered += group
    return ordered


def _job(entry: TimelineEntry) -> str:
    return entry.job
