"""`pifleet boards`, `pifleet flash`, `pifleet firmware …`: clients of the flashing REST API (`--url`).

Layer: CLI adapter; it imports only cli.client. Nothing here touches a serial port: the master owns the USB
boards, the CLI asks it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .client import api_options, call, echo_json, json_option, local_time, table


def _mib(size: int | None) -> str:
    return f"{size // 1048576} MiB" if size else "?"


@click.command()
@api_options
@click.option("--probe", "probe_all", is_flag=True, help="Ask esptool about every board not probed yet.")
@json_option
def boards(url, probe_all, as_json) -> None:
    """List boards on the Pi's USB (and virtual ones): port, USB bridge, chip, flash size, MAC, known device."""
    items = call(url, "GET", "/api/boards")
    if probe_all:
        for board in items:
            if board["probe"] is None:
                try:
                    call(url, "POST", "/api/boards/probe", json={"port": board["port"]})
                except click.ClickException as e:
                    click.echo(f"{board['port']}: {e.message}", err=True)
        items = call(url, "GET", "/api/boards")
    if as_json:
        echo_json(items)
        return
    rows = []
    for b in items:
        p = b["probe"]
        rows.append(
            [
                b["port"],
                b["bridge"],
                p["chip"] if p else ("no answer" if b["probe_error"] else "-"),
                _mib(p["flash_size"]) if p else "-",
                p["mac"] if p else "-",
                b["device_name"] or "-",
            ]
        )
    if not rows:
        click.echo("no boards on USB")
        return
    table(rows, ["PORT", "BRIDGE", "CHIP", "FLASH", "MAC", "DEVICE"])


@click.command()
@api_options
@click.argument("port")
@click.option("--name", required=True, help="The board's name (what people and jobs call it).")
@click.option("--role", required=True, help="The board's role (capability preset), e.g. blind, sensor.")
@click.option(
    "--firmware",
    "firmware",
    type=int,
    default=None,
    help="Catalog id of the base image (default: the newest for the detected chip).",
)
@click.option("--factory-reset", is_flag=True, help="Forget the board's identity: new device id and secret.")
@click.option("--baud", type=int, default=460800, show_default=True, help="esptool baud rate for the write.")
@click.option(
    "--ota/--no-ota",
    default=None,
    help="The OTA layout (an OTA-capable image: otadata, ota_0, ota_1), so MicroPython itself can later be updated "
    "over the air (default: the master's PIFLEET_FLASH_OTA).",
)
def flash(url, port, name, role, firmware, factory_reset, baud, ota) -> None:
    """Flash & pair the board on PORT: base image + agent + identity, verify, reset."""
    body = {
        "port": port,
        "name": name,
        "role": role,
        "firmware": firmware,
        "factory_reset": factory_reset,
        "baud": baud,
    }
    if ota is not None:
        body["ota"] = ota
    job = call(url, "POST", "/api/flash", json=body)
    click.echo(f"flash job {job['id']} on {port}")
    with click.progressbar(length=100, label="flashing", show_percent=True, file=sys.stderr) as bar:
        shown = 0
        while True:
            job = call(url, "GET", f"/api/flash/{job['id']}")
            if job["progress"] > shown:
                bar.update(job["progress"] - shown)
                shown = job["progress"]
            if job["state"] in ("done", "failed"):
                break
            bar.label = job["state"]
            time.sleep(0.2)
    if job["state"] == "failed":
        raise click.ClickException(f"flash failed: {job['error']}")
    click.echo(
        f"{name} flashed as {job['device_id']} ({job['chip']}, MAC {job['mac']}): {job['bytes']} bytes "
        f"written, {job['bytes_sent']} sent; the board is booting"
    )


@click.group()
def firmware() -> None:
    """Base images: the catalog of stock MicroPython images."""


@firmware.command("add")
@api_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def firmware_add(url, file: Path) -> None:
    """Register a MicroPython .bin (checked with esptool's image tools)."""
    entry = call(
        url, "POST", "/api/firmware", content=file.read_bytes(), headers={"content-type": "application/octet-stream"}
    )
    click.echo(
        f"firmware {entry['id']}: {entry['chip']} MicroPython {entry['version']} "
        f"({entry['size']} bytes, sha256 {entry['sha256']}){', OTA-capable' if entry.get('ota') else ''}"
    )


@firmware.command("list")
@api_options
def firmware_list(url) -> None:
    """List the catalog."""
    items = call(url, "GET", "/api/firmware")
    if not items:
        click.echo("the catalog is empty: pifleet firmware add FILE")
        return
    table(
        [
            [
                f["id"],
                f["chip"],
                f["version"],
                f["source"],
                f["size"],
                "yes" if f.get("ota") else "no",
                f["sha256"][:16] + "…",
                local_time(url, f["added_at"]),
            ]
            for f in items
        ],
        ["ID", "CHIP", "VERSION", "SOURCE", "SIZE", "OTA", "SHA256", "ADDED"],
    )


@firmware.command("fetch")
@api_options
@click.argument("chip")
@click.argument("version")
@click.option("--sha256", default=None, help="The SHA-256 you trust for this file (checked before it is added).")
@click.option(
    "--trust-https",
    is_flag=True,
    help="Accept the download without a SHA-256 to check (HTTPS and the image's own digests only).",
)
def firmware_fetch(url, chip, version, sha256, trust_https) -> None:
    """Download an official MicroPython release for CHIP (esp32, esp32s3 …) VERSION (v1.24.1) — needs internet."""
    entry = call(
        url,
        "POST",
        "/api/firmware/fetch",
        json={"chip": chip, "version": version, "sha256": sha256, "trust_https": trust_https},
    )
    click.echo(f"firmware {entry['id']}: {entry['chip']} MicroPython {entry['version']} (sha256 {entry['sha256']})")


@firmware.command("rollout")
@api_options
@click.argument("firmware_id", type=int)
@click.option("--role", default=None, help="Every board of this role.")
@click.option("--devices", multiple=True, help="The boards named (repeat, or give several: --devices a b …).")
@click.argument("more_devices", nargs=-1)
@click.option("--no-wait", is_flag=True, help="Start it and return (follow it with GET /api/firmware/rollouts/ID).")
@json_option
def firmware_rollout(url, firmware_id, role, devices, more_devices, no_wait, as_json) -> None:
    """Update MicroPython over the air to FIRMWARE_ID (an OTA-capable image): one board first, then the rest in
    waves, halting at the first failure. Boards: --role ROLE, or --devices NAME…"""
    names = list(devices) + list(more_devices)
    if (role is None) == (not names):
        raise click.UsageError("give --role ROLE or --devices NAME…")
    if more_devices and not devices:
        raise click.UsageError(f"unexpected argument {more_devices[0]!r}")
    body = {"role": role} if role is not None else {"devices": names}
    rollout = call(url, "POST", f"/api/firmware/{firmware_id}/rollouts", json=body)
    shown: dict[str, tuple] = {}
    while True:
        for b in rollout["boards"]:
            now = (b["state"], b["progress"] // 10 if b["state"] == "transferring" else 0, b["reason"])
            if not as_json and shown.get(b["device"]) != now:
                shown[b["device"]] = now
                detail = f" {b['progress']}%" if b["state"] == "transferring" else ""
                detail += f": {b['reason']}" if b["reason"] else ""
                click.echo(f"{b['device']}: {b['state']}{detail}")
        if no_wait or rollout["state"] != "running":
            break
        time.sleep(0.5)
        rollout = call(url, "GET", f"/api/firmware/rollouts/{rollout['id']}")
    if as_json:
        echo_json(rollout)
        return
    if rollout["state"] == "halted":
        raise click.ClickException(f"firmware rollout {rollout['id']} halted: {rollout['reason']}")
    click.echo(f"firmware rollout {rollout['id']}: {rollout['state']} (MicroPython {rollout['version']})")


COMMANDS = [boards, flash, firmware]
