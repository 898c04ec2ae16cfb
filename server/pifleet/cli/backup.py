"""`pifleet backup [FILE]` and `pifleet restore FILE`: one archive of a master (ops/backup.py says what it holds).

Layer: CLI adapter. Not a client of the REST API: a backup needs the database itself (pg_dump) and the data
directory's files, and a restore runs while no master does, so both run locally on the master's machine, with
`--data-dir` (default the per-user data directory) and the master's database: DATABASE_URL's, else the embedded
server in the data directory. A backup may run while the master runs; a restore needs it stopped.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from ..config import default_data_dir
from ..ops import backup as backups

_data_dir = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=default_data_dir,
    show_default="per-user data directory",
    help="The master's data directory.",
)
_passphrase = click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Encrypt (backup) or decrypt (restore) with the passphrase on the file's first line.",
)


def _passphrase_of(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return backups.read_passphrase(path)
    except backups.BackupError as e:
        raise click.ClickException(str(e)) from None


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@_data_dir
@_passphrase
def backup(file: Path | None, data_dir: Path, passphrase_file: Path | None) -> None:
    """Write a backup of the master (database, OSCORE sequence marks, base images) to FILE (default
    pifleet-TIME.backup here), mode 0600. It holds every board's secret: keep it like a key, or encrypt it with
    --passphrase-file. Runs locally, also while the master runs; DATABASE_URL selects a system PostgreSQL."""
    file = file or Path(f"pifleet-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.backup")
    try:
        made = backups.make(
            file,
            data_dir=data_dir.resolve(),
            database_url=os.environ.get("DATABASE_URL") or None,
            passphrase=_passphrase_of(passphrase_file),
        )
    except backups.BackupError as e:
        raise click.ClickException(str(e)) from None
    sealed = ", encrypted" if passphrase_file else ""
    click.echo(f"backup written: {made.path} ({made.size} bytes{sealed}, {made.seconds:.1f} s)")


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_data_dir
@_passphrase
def restore(file: Path, data_dir: Path, passphrase_file: Path | None) -> None:
    """Restore a backup into an empty data directory and the master's database (the embedded one it will hold,
    or DATABASE_URL's, which must be empty or missing). Stop the master first; start it on DIR afterwards."""
    try:
        done = backups.restore(
            file,
            data_dir=data_dir.resolve(),
            database_url=os.environ.get("DATABASE_URL") or None,
            passphrase=_passphrase_of(passphrase_file),
        )
    except backups.BackupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"restored the backup of {done.created_at:%Y-%m-%d %H:%M:%S} UTC (pifleet {done.version}, "
        f"{done.devices} boards) into {data_dir} in {done.seconds:.1f} s; "
        f"OSCORE sequence numbers moved {done.seq_skip} ahead"
    )


COMMANDS = [backup, restore]
