"""Line charts of stored readings and the timeline's picture, drawn on the server as SVG geometry.

Layer: adapter helper, pure (no I/O, no framework): numbers in, coordinates and labels out; the templates
(_chart.html, _timeline_picture.html) turn them into <svg>. Why SVG from the server, not a charting library: the
master already reduces a range to at most a few hundred min/max/avg buckets in SQL, so the drawing is a polyline
and a band — no script to vendor, load or trust under the pages' Content-Security-Policy, nothing to draw in the
browser, and a chart that works without JavaScript and updates with the same htmx swap as the rest of the page.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

# Drawing area of a chart (viewBox units; the SVG scales to the page's width).
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 10, 26


class Chart(NamedTuple):
    width: int
    height: int
    plot: tuple[float, float, float, float]  # x, y, w, h of the plotting area
    lines: list[str]  # SVG "points" of the mean, one per stretch without a gap
    bands: list[str]  # SVG "points" of the min..max band, one polygon per stretch
    dots: list[tuple[float, float]]  # lone buckets (a stretch of one), drawn as dots
    yticks: list[tuple[float, str]]  # (y, label)
    xticks: list[tuple[float, str]]  # (x, label)
    points: int  # buckets drawn
    readings: int  # readings they stand for
    low: float | None
    high: float | None
    last: float | None


def line_chart(buckets: Sequence[Any], since: datetime, until: datetime, bucket: timedelta, tz: tzinfo = UTC) -> Chart:
    """Buckets (at, count, low, high, mean), oldest first, as a chart of [since, until). A stretch ends where
    the next bucket is much further away than buckets usually are: the board was offline or silent."""
    px, py, pw, ph = LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = (until - since).total_seconds() or 1
    lo = min((b.low for b in buckets), default=0.0)
    hi = max((b.high for b in buckets), default=1.0)
    lo, hi, step = _nice_range(lo, hi)

    def x(at: datetime) -> float:
        return round(px + pw * (at - since).total_seconds() / span, 1)

    def y(v: float) -> float:
        return round(py + ph - ph * (v - lo) / (hi - lo), 1)

    half = bucket / 2  # a bucket's value is drawn at its middle
    stretches: list[list[Any]] = []
    limit = _gap(buckets, bucket)
    for b in buckets:
        if stretches and (b.at - stretches[-1][-1].at) <= limit:
            stretches[-1].append(b)
        else:
            stretches.append([b])
    lines, bands, dots = [], [], []
    for s in stretches:
        if len(s) == 1:
            dots.append((x(s[0].at + half), y(s[0].mean)))
            continue
        lines.append(" ".join(f"{x(b.at + half)},{y(b.mean)}" for b in s))
        upper = [f"{x(b.at + half)},{y(b.high)}" for b in s]
        lower = [f"{x(b.at + half)},{y(b.low)}" for b in reversed(s)]
        bands.append(" ".join(upper + lower))
    yticks = []
    v = lo
    while v <= hi + step / 2:
        yticks.append((y(v), _fmt(v, step)))
        v += step
    return Chart(
        WIDTH,
        HEIGHT,
        (px, py, pw, ph),
        lines,
        bands,
        dots,
        yticks,
        [(x(t), label) for t, label in _time_ticks(since, until, tz)],
        len(buckets),
        sum(b.count for b in buckets),
        min((b.low for b in buckets), default=None),
        max((b.high for b in buckets), default=None),
        buckets[-1].mean if buckets else None,
    )


def _gap(buckets: Sequence[Any], bucket: timedelta) -> timedelta:
    """How far apart two buckets may be and still be joined by the line."""
    steps = [(b.at - a.at).total_seconds() for a, b in zip(buckets, buckets[1:], strict=False)]
    usual = statistics.median(steps) if steps else bucket.total_seconds()
    return timedelta(seconds=max(2 * bucket.total_seconds(), 2.5 * usual))


def _nice_range(lo: float, hi: float) -> tuple[float, float, float]:
    """Axis limits on round numbers around [lo, hi], and the tick step (about five ticks)."""
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def _fmt(v: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{v:.{decimals}f}"


def _time_ticks(since: datetime, until: datetime, tz: tzinfo) -> list[tuple[datetime, str]]:
    """Ticks on round hours or midnights of the master's time zone, about six of them, labelled for the span."""
    hours = (until - since).total_seconds() / 3600
    every = next(h for h in (1, 2, 3, 4, 6, 12, 24, 48, 72, 120, 168) if hours / h <= 7)
    fmt = "%H:%M" if every < 24 else "%d %b"
    t = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while t < until:  # hour by hour in UTC, so a DST change neither repeats nor skips a tick
        local = t.astimezone(tz)
        hourly = every < 24 and local.hour % every == 0
        daily = every >= 24 and local.hour == 0 and not local.toordinal() % (every // 24)
        if t >= since and local.minute == 0 and (hourly or daily):
            out.append((t, local.strftime(fmt)))
        t += timedelta(hours=1)
    return out


# ---- the timeline's picture ----------------------------------------------------------------------------------

LANE_H, LABEL_W, AXIS_H = 34, 110, 24


class Mark(NamedTuple):
    x: float
    y: float
    follow_up: bool
    kind: str  # planned | projected | a final state of an execution in the past
    label: str  # what it does, shown on hover and read by screen readers
    href: str


class Picture(NamedTuple):
    width: int
    height: int
    lanes: list[tuple[float, str]]  # (y of the lane's middle, device)
    marks: list[Mark]
    now_x: float
    xticks: list[tuple[float, str]]
    plot: tuple[float, float, float, float]


def timeline_picture(
    since: datetime,
    until: datetime,
    now: datetime,
    items: Sequence[tuple[datetime, str, bool, str, str, str]],
    tz: tzinfo = UTC,
) -> Picture:
    """Items (at, device, follow_up, kind, label, href) as marks in one lane per device over [since, until)."""
    devices = sorted({i[1] for i in items})
    lanes = {d: AXIS_H + LANE_H * k + LANE_H / 2 for k, d in enumerate(devices)}
    pw = WIDTH - LABEL_W - RIGHT
    span = (until - since).total_seconds()

    def x(at: datetime) -> float:
        return round(LABEL_W + pw * (at - since).total_seconds() / span, 1)

    marks = [
        Mark(x(at), lanes[d], follow_up, kind, label, href)
        for at, d, follow_up, kind, label, href in items
        if since <= at < until
    ]
    height = AXIS_H + LANE_H * max(1, len(devices)) + 4
    return Picture(
        WIDTH,
        int(height),
        [(y, d) for d, y in lanes.items()],
        marks,
        x(now),
        [(x(t), label) for t, label in _time_ticks(since, until, tz)],
        (LABEL_W, AXIS_H, pw, height - AXIS_H),
    )
