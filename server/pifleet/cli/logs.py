"""`pifleet logs DEVICE [-f] [--since …] [--limit N]`: what a board printed, as "TIME line", oldest first.

Layer: CLI adapter, a client of the REST API like the rest of the CLI; it imports only cli.client. The lines come
from GET /api/devices/NAME/logs; `-f` then follows the event stream (GET /api/events?logs=NAME) until Ctrl-C. The
lines are numbered without gaps, so a batch the stream lost (or that came while it reconnected) is read back
from the API with `since`, and no line is printed twice.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from urllib.parse import quote

import click
import httpx

from .client import api_options, auth_headers, call, check

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RETRY_S = (1, 2, 5, 10)


def since_instant(value: str) -> str:
    """--since as the API takes it: ISO 8601 as given, or a time ago (`90s`, `10m`, `2h`, `1d`)."""
    if m := _AGO.match(value.strip()):
        ago = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        return (datetime.now().astimezone() - ago).isoformat()
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected an ISO 8601 time (2026-12-02T14:00) or a time ago (10m, 2h, 1d)", param_hint="--since"
        ) from None
    return value


def show(line: dict) -> None:
    when = datetime.fromisoformat(line["time"]).astimezone()
    click.echo(f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d} {line['line']}")


class Printer:
    """Prints each line once, in the board's order; knows the last one printed (number and time)."""

    def __init__(self, since: str | None) -> None:
        self.seq: int | None = None
        self.time = since

    def add(self, lines: list[dict], strict: bool = True) -> bool:
        """Print what is new; False if these `strict`ly next lines leave a gap after the last one printed (lines
        read back from the API may: the oldest are trimmed)."""
        for line in lines:
            if self.seq is not None and line["seq"] <= self.seq:
                continue
            if strict and self.seq is not None and line["seq"] != self.seq + 1:
                return False
            show(line)
            self.seq, self.time = line["seq"], line["time"]
        return True


def _read(url: str, name: str, since: str | None, limit: int) -> list[dict]:
    params = {"limit": str(limit)} | ({"since": since} if since else {})
    return call(url, "GET", f"/api/devices/{quote(name, safe='')}/logs", params=params)


def _catch_up(url: str, name: str, printer: Printer) -> None:
    """The lines since the last one printed (the same instant included: the printer skips what it printed)."""
    printer.add(_read(url, name, printer.time, 10_000), strict=False)


def _follow(url: str, name: str, printer: Printer) -> None:
    """Follow the event stream; reconnect after a cut, catching up from the API each time it (re)opens."""
    failures = 0
    while True:
        try:
            with httpx.stream(
                "GET",
                url.rstrip("/") + "/api/events",
                params={"logs": name},
                headers=auth_headers(url),
                timeout=httpx.Timeout(30, read=60),  # the stream says something at least every 15 s
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    check(response)
                event = None
                for raw in response.iter_lines():
                    if raw.startswith("event:"):
                        event = raw[6:].strip()
                    elif raw.startswith("data:") and event == "hello":
                        failures = 0
                        _catch_up(url, name, printer)  # subscribed now: nothing from here on is missed
                    elif raw.startswith("data:") and event == "logs":
                        if not printer.add(json.loads(raw[5:])["lines"]):
                            _catch_up(url, name, printer)  # the stream lost a batch: read it back
                    elif raw.startswith("data:") and event == "session-ended":
                        raise click.ClickException("the session or token ended; log in again (`pifleet login`)")
        except httpx.HTTPError as exc:
            wait = RETRY_S[min(failures, len(RETRY_S) - 1)]
            failures += 1
            click.echo(f"(the event stream was cut: {exc}; again in {wait} s)", err=True)
            time.sleep(wait)


@click.command("logs")
@api_options
@click.argument("device")
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as the board sends them, until Ctrl-C.")
@click.option("--since", help="Only lines received since then: ISO 8601 (2026-12-02T14:00), or ago (10m, 2h, 1d).")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=200, show_default=True, help="At most this many lines."
)
def logs(url, device, follow, since, limit) -> None:
    """What DEVICE printed (its agent, its role modules, tracebacks), as TIME LINE, oldest first."""
    printer = Printer(since_instant(since) if since else None)
    printer.add(_read(url, device, printer.time, limit), strict=False)
    if not follow:
        return
    try:
        _follow(url, device, printer)
    except KeyboardInterrupt:
        pass


COMMANDS = [logs]
