"""`pifleet doctor`: checks what the master needs from this machine and prints each check OK, WARN or FAIL with a
fix (ops/doctor.py holds the checks). Exit status 1 if any check fails.

Layer: CLI adapter. Not a client of the REST API: most of what it checks (the database, the data directory's
disk, whether the CoAP port can be bound, zeroconf, serial ports, the clock) is the machine's, and it has to
answer when the master does not start. So it runs locally with the master's `--data-dir` and database
(DATABASE_URL, else the embedded one in the data directory), beside a running master or without one.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..config import Settings, default_data_dir
from ..ops import doctor as checks


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=default_data_dir,
    show_default="per-user data directory",
    help="The master's data directory.",
)
@click.option("--coap-host", default="127.0.0.1", show_default=True, help="The master's CoAP address.")
@click.option("--coap-port", default=5683, show_default=True, help="The master's CoAP UDP port.")
def doctor(data_dir: Path, coap_host: str, coap_port: int) -> None:
    """Check the database, disk, CoAP port, mDNS, serial ports, clock and base images; print a fix for each
    problem. Runs locally (DATABASE_URL selects a system PostgreSQL); exit status 1 on any FAIL."""
    settings = Settings(
        data_dir=data_dir.resolve(),
        coap_host=coap_host,
        coap_port=coap_port,
        database_url=os.environ.get("DATABASE_URL") or None,
    )
    found = checks.run(settings)
    for check in found:
        click.echo(f"{check.status:<4}  {check.name}: {check.detail}")
        if check.fix and check.status != checks.OK:
            click.echo(f"      fix: {check.fix}")
    if any(check.status == checks.FAIL for check in found):
        raise SystemExit(1)


COMMANDS = [doctor]
