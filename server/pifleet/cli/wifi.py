"""`pifleet wifi show|set|remove|push|ap`: the fleet's Wi-Fi networks (issue 17).

Layer: CLI adapter, a client of the REST API (GET/PUT /api/wifi, POST /api/wifi/push, GET /api/wifi/ap/NAME); it
imports only cli.client. A key is read from a file (`--psk-file FILE`, `-` for standard input), never taken from
the command line, where other users of the machine and the shell's history would see it.
"""

from __future__ import annotations

import json

import click

from .client import api_options, call, echo_json, json_option, local_time, table


def _show(url: str, wifi: dict) -> None:
    rows = [[str(i + 1), n["ssid"], "set" if n["psk_set"] else "open"] for i, n in enumerate(wifi["networks"])]
    table(rows, ["#", "SSID", "KEY"])
    click.echo(f"(from {wifi['source']}; a board that joins none for {wifi['fallback_s']} s opens its access point)")
    if wifi["boards"]:
        click.echo()
        boards = [
            [
                b["device"],
                "online" if b["online"] else "offline",
                b["ssid"] or "-",
                {True: "yes", False: "no", None: "-"}[b["took_new"]],
                b["state"],
                local_time(url, b["pushed_at"]),
            ]
            for b in wifi["boards"]
        ]
        table(boards, ["BOARD", "STATE", "NETWORK", "NEW", "PUSH", "PUSHED"])


def _read_key(psk_file) -> str:
    key = psk_file.read()
    key = key[:-1] if key.endswith("\n") else key  # `echo KEY > file` adds one
    return key[:-1] if key.endswith("\r") else key


def _put(url: str, body: dict) -> dict:
    return call(url, "PUT", "/api/wifi", content=json.dumps(body), headers={"content-type": "application/json"})


@click.group()
def wifi() -> None:
    """The fleet's Wi-Fi: the networks the boards join (in order of preference), a new router's credentials pushed
    to every board, a board's own access point."""


@wifi.command("show")
@api_options
@json_option
def wifi_show(url, as_json) -> None:
    """The networks (keys are never shown) and which network each board uses."""
    current = call(url, "GET", "/api/wifi")
    echo_json(current) if as_json else _show(url, current)


@wifi.command("set")
@api_options
@click.argument("ssid")
@click.option(
    "--psk-file",
    type=click.File("r"),
    help="A file holding the network's key (WPA2 passphrase or 64 hex digits; `-` reads standard input). "
    "Without it: an open network, or the key stored already for SSID.",
)
@click.option("--open", "open_network", is_flag=True, help="An open network (no key).")
@click.option("--only", is_flag=True, help="Make SSID the only network (the others are removed).")
@click.option("--last", is_flag=True, help="Put SSID last (least preferred) instead of first.")
@click.option("--fallback-s", type=int, help="Seconds without any network before a board opens its access point.")
def wifi_set(url, ssid, psk_file, open_network, only, last, fallback_s) -> None:
    """Add or change network SSID (first in preference unless --last); the others keep their order and keys.

    \b
    pifleet wifi set home --psk-file ~/wifi-key.txt
    pass show home-wifi | pifleet wifi set home --psk-file -
    """
    current = call(url, "GET", "/api/wifi")
    network: dict = {"ssid": ssid}
    if psk_file is not None:
        network["psk"] = _read_key(psk_file)
    elif open_network:
        network["psk"] = ""
    others = [] if only else [{"ssid": n["ssid"]} for n in current["networks"] if n["ssid"] != ssid]
    if current["source"] != "settings":  # the environment's network has no stored key to keep
        others = []
    body: dict = {"networks": others + [network] if last else [network] + others}
    if fallback_s is not None:
        body["fallback_s"] = fallback_s
    _show(url, _put(url, body))


@wifi.command("remove")
@api_options
@click.argument("ssid")
def wifi_remove(url, ssid) -> None:
    """Remove network SSID from the list."""
    current = call(url, "GET", "/api/wifi")
    if not any(n["ssid"] == ssid for n in current["networks"]):
        raise click.ClickException(f"no network {ssid!r} in the list")
    _show(url, _put(url, {"networks": [{"ssid": n["ssid"]} for n in current["networks"] if n["ssid"] != ssid]}))


@wifi.command("push")
@api_options
def wifi_push(url) -> None:
    """Send the networks to every board online (a new router): each keeps its old networks until it has joined one
    of these; `pifleet wifi show` then says which network each board uses."""
    answer = call(url, "POST", "/api/wifi/push")
    click.echo(f"pushing to: {', '.join(answer['pushing']) or 'no board'}")
    if answer["skipped"]:
        click.echo(f"offline (not reached): {', '.join(answer['skipped'])}")


@wifi.command("ap")
@api_options
@click.argument("device")
def wifi_ap(url, device) -> None:
    """The access point DEVICE opens when it joins no network: its SSID and WPA2 password."""
    ap = call(url, "GET", f"/api/wifi/ap/{device}")
    click.echo(f"ssid: {ap['ssid'] or '? (MAC unknown)'}\npassword: {ap['password']}")


COMMANDS = [wifi]
