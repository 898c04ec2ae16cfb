"""`pifleet settings show|set KEY VALUE`: the master's location (for sun triggers) and time zone.

Layer: CLI adapter, a client of the REST API (GET/PUT /api/settings) like the rest of the CLI; it imports only
cli.client.
"""

from __future__ import annotations

import json

import click

from .client import api_options, call, echo_json, json_option, table

KEYS = ("latitude", "longitude", "timezone")


def _show(settings: dict) -> None:
    rows = [[key, "-" if settings[key] is None else str(settings[key])] for key in KEYS]
    table(rows, ["KEY", "VALUE"])
    if settings.get("updated_at"):
        click.echo(f"(last changed {settings['updated_at']} by {settings.get('updated_by') or '?'})")


@click.group()
def settings() -> None:
    """The master's settings: latitude and longitude (sun triggers), timezone (how times are shown)."""


@settings.command("show")
@api_options
@json_option
def settings_show(url, as_json) -> None:
    """Show the settings (defaults included)."""
    current = call(url, "GET", "/api/settings")
    echo_json(current) if as_json else _show(current)


@settings.command("set")
@api_options
@click.argument("key", type=click.Choice(KEYS))
@click.argument("value")
def settings_set(url, key, value) -> None:
    """Set KEY to VALUE, e.g. `pifleet settings set latitude 52.52`, `… timezone Europe/Berlin`; `none` brings
    a key back to its default."""
    if value.lower() in ("none", "null", "default"):
        parsed = None
    elif key == "timezone":
        parsed = value
    else:
        try:
            parsed = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not a number (decimal degrees, e.g. 52.52)", param_hint=key
            ) from None
    _show(
        call(
            url, "PUT", "/api/settings", content=json.dumps({key: parsed}), headers={"content-type": "application/json"}
        )
    )


COMMANDS = [settings]
