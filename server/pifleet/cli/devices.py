"""`pifleet devices`: boards and processes with their online state (GET /api/devices); `pifleet restart DEVICE`.

Layer: CLI adapter, a client of the REST API like the rest of the CLI; it imports only cli.client.
"""

from __future__ import annotations

import click

from .client import api_options, call, echo_json, json_option, local_time, table

SITE_DOWN = "site unreachable"  # a board of another site whose master is down (docs/operations.md, "Scaling out")


@click.command()
@api_options
@json_option
def devices(url, as_json) -> None:
    """List boards and processes with their online state."""
    items = call(url, "GET", "/api/devices")
    if as_json:
        echo_json(items)
        return
    table(
        [
            [
                d["name"],
                "online" if d["online"] else (SITE_DOWN if d["unreachable"] == SITE_DOWN else "offline"),
                d["role"] or "-",
                ",".join(c["name"] for c in d["capabilities"]) or "-",
                f"{d['address']}:{d['port']}",
                local_time(url, d["last_seen"], "never"),
            ]
            for d in items
        ],
        ["NAME", "STATE", "ROLE", "CAPABILITIES", "ADDRESS", "LAST SEEN"],
    )


@click.command()
@api_options
@click.argument("device")
def restart(url, device) -> None:
    """Restart a board: outputs safe, then a reset; it is back online once it registered again."""
    call(url, "POST", f"/api/devices/{device}/restart")
    click.echo(f"{device} restarts; `pifleet devices` shows it online again within seconds")


COMMANDS = [devices, restart]
