"""`pifleet adopt …`: boards waiting for adoption. A REST client like the rest of the CLI (/api/adoptions)."""

from __future__ import annotations

import json

import click


def _api():
    from . import cli  # lazily: cli attaches this module at its end

    return cli


@click.group()
def adopt() -> None:
    """Boards without identity: list them, confirm the code their console prints, or reject them."""


def _url_option(fn):
    from .cli_client import api_options  # --url and --token

    return api_options(fn)


@adopt.command("list")
@_url_option
@click.option("--all", "show_all", is_flag=True, help="Also adopted, rejected and locked boards.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def adopt_list(url, show_all, as_json) -> None:
    """Boards waiting for adoption (ID, MAC, address)."""
    cli = _api()
    items = cli._call(url, "GET", "/api/adoptions", params={} if show_all else {"pending": "true"})
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no board is waiting for adoption")
        return
    cli._table(
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
@_url_option
@click.argument("adoption_id", type=int)
@click.argument("code")
@click.option("--name", help="Name of the new device (default: its device id).")
@click.option("--role", help="Role of the new device.")
def adopt_confirm(url, adoption_id, code, name, role) -> None:
    """Adopt board ADOPTION_ID: CODE is what its console printed (adopt: code ABCD-EFGH)."""
    body = {"code": code} | ({"name": name} if name else {}) | ({"role": role} if role else {})
    item = _api()._call(url, "POST", f"/api/adoptions/{adoption_id}/confirm", json=body)
    click.echo(f"adopted board {item['mac']} as {item['device_id']}; it registers once it has fetched its identity")


@adopt.command("reject")
@_url_option
@click.argument("adoption_id", type=int)
def adopt_reject(url, adoption_id) -> None:
    """Refuse board ADOPTION_ID: it gets no identity."""
    item = _api()._call(url, "POST", f"/api/adoptions/{adoption_id}/reject")
    click.echo(f"rejected board {item['mac']}")
