"""What every `pifleet` command file shares: where the master is (`--url`), who we are (`--token`, PIFLEET_TOKEN,
or the token `pifleet login` stored), the one HTTP helper that turns problem documents into messages, and the
table / JSON output.

Layer: CLI adapter. It imports nothing from the other cli modules (they all import it). The stored tokens live in
~/.config/pifleet/token ($XDG_CONFIG_HOME if set), mode 0600, one per master URL — a token is only ever sent to
the master that issued it.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
_TOKEN_KEY = "pifleet.token"


def _remember_token(ctx: click.Context, _param, value: str | None) -> None:
    if value:
        ctx.meta[_TOKEN_KEY] = value


def url_option(fn):
    """--url alone: for the commands that log in with a password instead of a token (login, token, user …)."""
    return click.option(
        "--url", envvar="PIFLEET_URL", default=DEFAULT_URL, show_default=True, help="The master's HTTP address."
    )(fn)


def api_options(fn):
    """--url and --token, for every command that talks to the master's API."""
    fn = click.option(
        "--token",
        envvar="PIFLEET_TOKEN",
        expose_value=False,
        callback=_remember_token,
        help="API token (pft_…); default: PIFLEET_TOKEN, else the one `pifleet login` stored.",
    )(fn)
    return url_option(fn)


def json_option(fn):
    """--json: print the API's answer as it came instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")(fn)


def token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pifleet" / "token"


def _key(url: str) -> str:
    return url.rstrip("/")


def stored_tokens() -> dict[str, str]:
    path = token_file()
    try:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            click.echo(f"warning: {path} is readable by others; chmod 600 it", err=True)
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_token(url: str, token: str) -> Path:
    """Keep the token for this master (replacing an older one), readable by this user only."""
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = stored_tokens() | {_key(url): token}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, json.dumps(tokens, indent=1).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def current_token(url: str) -> str | None:
    ctx = click.get_current_context(silent=True)
    given = ctx.meta.get(_TOKEN_KEY) if ctx is not None else None
    return given or os.environ.get("PIFLEET_TOKEN") or stored_tokens().get(_key(url))


def auth_headers(url: str) -> dict[str, str]:
    token = current_token(url)
    return {"Authorization": f"Bearer {token}"} if token else {}


def problem_message(response: httpx.Response) -> str:
    try:
        problem = response.json()
        where = f" (field: {problem['field']})" if problem.get("field") else ""
        message = f"{problem.get('title', 'error')}: {problem.get('detail')}{where}"
    except (ValueError, AttributeError):
        message = response.text
    if response.status_code == 401:
        message += "\n  log in once with `pifleet login`, or pass --token / PIFLEET_TOKEN"
    return f"{response.status_code} {message}"


def check(response: httpx.Response):
    """The answer's JSON (None when empty); a problem answer becomes a ClickException with its detail and field."""
    if response.status_code >= 400:
        raise click.ClickException(problem_message(response))
    return response.json() if response.content else None


def request(url: str, method: str, path: str, *, timeout: float = 30, **kwargs) -> httpx.Response:
    """One HTTP request to the master with the current token, answered as it came (for the few commands that read
    more than the JSON); an unreachable master becomes a ClickException."""
    kwargs["headers"] = auth_headers(url) | dict(kwargs.get("headers") or {})
    try:
        return httpx.request(method, url.rstrip("/") + path, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the master at {url}: {exc}") from None


def call(url: str, method: str, path: str, **kwargs):
    """One API call with the current token; a problem answer becomes a ClickException with its detail and field."""
    return check(request(url, method, path, **kwargs))


# ---- output and arguments ------------------------------------------------------------------------------------


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


_ZONES: dict[str, tzinfo] = {}


def master_zone(url: str) -> tzinfo:
    """The master's time zone (its settings), asked once per command; UTC when the master cannot say."""
    key = _key(url)
    if key not in _ZONES:
        try:
            _ZONES[key] = ZoneInfo(call(url, "GET", "/api/settings")["timezone"])
        except (click.ClickException, ZoneInfoNotFoundError, KeyError, TypeError, ValueError):
            _ZONES[key] = UTC
    return _ZONES[key]


def local_time(url: str, instant: str | None, missing: str = "-") -> str:
    """An instant as the API gives it (ISO 8601 with an offset) in the master's time zone: 2026-12-02 20:00:00 CET."""
    if not instant:
        return missing
    try:
        when = datetime.fromisoformat(instant)
    except ValueError:
        return instant
    return when.astimezone(master_zone(url)).strftime("%Y-%m-%d %H:%M:%S %Z")


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def host_port(value: str) -> tuple[str, int]:
    """HOST:PORT of a master's CoAP endpoint (`sim start --master`, `process start --master`)."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:5683")
    return host, int(port)
