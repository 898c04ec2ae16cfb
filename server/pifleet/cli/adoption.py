"""`pifleet adopt …`: boards waiting for adoption. A REST client like the rest of the CLI (/api/adoptions).

Layer: CLI adapter; it imports only cli.client.
"""

from __future__ import annotations

import click

from .client import api_options, call, echo_json, json_option, table


@click.group()
def adopt() -> None:
    """Boards without identity: list them, confirm the code their console prints, or reject them."""


@adopt.command("list")
@api_options
@click.option("--all", "show_all", is_flag=True, help="Also adopted, rejected and locked boards.")
@json_option
def adopt_list(url, show_all, as_json) -> None:
    """Boards waiting for adoption (ID, MAC, address)."""
    items = call(url, "GET", "/api/adoptions", params={} if show_all else {"pending": "true"})
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no board is waiting for adoption")
        return
    table(
        [
            [
                a["id"],
                a["mac"],
                a["chip"] or "-",
                a["state"],
                a["address"] or "-",
                a["attempts"],
                a["device_id"] or "-",
                a["first_seen"],
            ]
            for a in items
        ],
        ["ID", "MAC", "CHIP", "STATE", "ADDRESS", "WRONG CODES", "DEVICE", "SINCE"],
    )


@adopt.command("confirm")
@api_options
@click.argument("adoption_id", type=int)
@click.argument("code")
@click.option("--name", help="Name of the new device (default: its device id).")
@click.option("--role", help="Role of the new device.")
def adopt_confirm(url, adoption_id, code, name, role) -> None:
    """Adopt board ADOPTION_ID: CODE is what its console printed (adopt: code ABCD-EFGH)."""
    body = {"code": code} | ({"name": name} if name else {}) | ({"role": role} if role else {})
    item = call(url, "POST", f"/api/adoptions/{adoption_id}/confirm", json=body)
    click.echo(f"adopted board {item['mac']} as {item['device_id']}; it registers once it has fetched its identity")


@adopt.command("reject")
@api_options
@click.argument("adoption_id", type=int)
def adopt_reject(url, adoption_id) -> None:
    """Refuse board ADOPTION_ID: it gets no identity."""
    item = call(url, "POST", f"/api/adoptions/{adoption_id}/reject")
    click.echo(f"rejected board {item['mac']}")


COMMANDS = [adopt]
