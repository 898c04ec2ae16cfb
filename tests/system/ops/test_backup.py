"""Backups as a keeper uses them: `pifleet backup` beside a running master, the master stopped, `pifleet restore`
into an empty data directory and a fresh database, a master started on them — the board, its jobs and the people
are back. And the master's daily backup with its retention."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import uuid
from datetime import UTC, datetime

import httpx

from pifleet.model import FINAL_STATES
from pifleet.storage.postgres import with_database
from tests.support.masters import ADMIN, ADMIN_PASSWORD, REPO
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, blind_job
from tests.system.e2e.test_blind_job import online_with_caps


def pifleet(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "pifleet", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


def nudge(master, device: str) -> dict:
    """Run the manual job `nudge` (the blind down for 0.2 s) and wait for its outcome."""
    before = {e["id"] for e in master.executions("nudge")}
    r = master.post("/api/jobs/nudge/run")
    assert r.status_code in (200, 201, 202), r.text
    return wait_until(
        lambda: next(
            (e for e in master.executions("nudge") if e["id"] not in before and e["state"] in FINAL_STATES), None
        ),
        timeout=30,
        what=f"the nudge run on {device}",
        explain=master.log_tail,
    )


def log_in(master) -> str:
    """Log in as the first admin (the password set before the backup) and make a write token."""
    with httpx.Client(base_url=master.url, timeout=30) as client:
        r = client.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf"]
        r = client.post("/api/tokens", json={"name": "after-restore", "scope": "write"})
        assert r.status_code == 201, r.text
        return r.json()["secret"]


def test_backup_stop_restore_start_brings_board_jobs_and_people_back(master_factory, board_factory, pg_url, tmp_path):
    old = master_factory().start()
    board = board_factory("blind-bk", old, role="blind")
    wait_until(lambda: online_with_caps(old, "blind-bk"), what="blind-bk online", explain=old.log_tail)
    tomorrow = blind_job("tomorrow", "blind-bk", at_in=86400, down_s=0.2, up_after_s=1, up_s=0.2)
    assert old.post("/api/jobs", tomorrow).status_code == 201
    manual = {
        "name": "nudge",
        "target": {"device": "blind-bk"},
        "trigger": {"type": "manual"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 0.2}},
    }
    assert old.post("/api/jobs", manual).status_code == 201
    assert nudge(old, "blind-bk")["state"] == "succeeded"  # the board has used OSCORE sequence numbers by now
    planned = [e["id"] for e in old.get("/api/executions/upcoming") if e["job"] == "tomorrow"]
    assert planned

    secret = tmp_path / "passphrase"
    secret.write_text("a long passphrase kept apart from the backups\n")
    archive = tmp_path / "backups" / "pifleet.backup"
    started = time.monotonic()
    made = pifleet(
        "backup", str(archive), "--data-dir", str(old.data_dir), "--passphrase-file", str(secret),
        database_url=old.database_url,
    )  # fmt: skip
    backup_s = time.monotonic() - started
    assert made.returncode == 0, made.stderr
    assert "backup written" in made.stdout and "encrypted" in made.stdout
    assert archive.stat().st_mode & 0o777 == 0o600, "a backup holds every board's secret"
    assert b"device_secrets" not in archive.read_bytes(), "the encrypted archive shows nothing of the database"
    old.stop()

    # a fresh database on the same server, and the next master's data directory, still empty
    new = master_factory()
    new.database_url = with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}")
    new.coap_port = old.coap_port  # where the board looks for its master (its config.json)
    refused = pifleet("restore", str(archive), "--data-dir", str(old.data_dir), "--passphrase-file", str(secret),
                      database_url=new.database_url)  # fmt: skip
    assert refused.returncode != 0 and "not empty" in refused.stderr
    refused = pifleet("restore", str(archive), "--data-dir", str(new.data_dir), database_url=new.database_url)
    assert refused.returncode != 0 and "encrypted" in refused.stderr and "--passphrase-file" in refused.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    refused = pifleet("restore", str(archive), "--data-dir", str(new.data_dir), "--passphrase-file", str(wrong),
                      database_url=new.database_url)  # fmt: skip
    assert refused.returncode != 0 and "wrong passphrase" in refused.stderr
    assert not new.data_dir.exists() or not any(new.data_dir.iterdir()), "a refused restore leaves nothing behind"

    started = time.monotonic()
    restored = pifleet("restore", str(archive), "--data-dir", str(new.data_dir), "--passphrase-file", str(secret),
                       database_url=new.database_url)  # fmt: skip
    restore_s = time.monotonic() - started
    assert restored.returncode == 0, restored.stderr
    assert "1 boards" in restored.stdout, restored.stdout
    assert list((new.data_dir / "oscore").glob("*.seq")), "the OSCORE sequence marks are back"
    assert list((new.data_dir / "firmware").iterdir()), "the base image the catalog names is back"
    print(f"\nbackup_s={backup_s:.2f} restore_s={restore_s:.2f} archive_bytes={archive.stat().st_size}")

    since = datetime.now(UTC)
    new.start(setup=False)
    assert "setup token" not in new.log_text(), "people are back: no first-admin setup is offered"
    new.token = log_in(new)

    def back_online():
        d = online_with_caps(new, "blind-bk")
        return d if d and d["last_seen"] and datetime.fromisoformat(d["last_seen"]) > since else None

    wait_until(back_online, timeout=60, what="blind-bk registered with the restored master", explain=new.log_tail)
    pulses_before = len(high_periods(board.pin_history(), DOWN_PIN))
    run = nudge(new, "blind-bk")
    assert run["state"] == "succeeded", run  # an OSCORE-protected command under the restored keys
    wait_until(
        lambda: len(high_periods(board.pin_history(), DOWN_PIN)) == pulses_before + 1,
        what="the blind's down pulse",
        explain=board.console_text,
    )
    assert [e["id"] for e in new.get("/api/executions/upcoming") if e["job"] == "tomorrow"] == planned


def test_the_master_backs_up_daily_and_keeps_the_newest(master_factory, tmp_path):
    directory = tmp_path / "daily"
    directory.mkdir()
    for day in ("20260101", "20260102", "20260103"):
        old = directory / f"pifleet-{day}T030000Z.backup"
        old.write_bytes(b"an older backup")
        os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    (directory / "notes.txt").write_text("not a backup: kept")
    master = master_factory(environ={"PIFLEET_BACKUP_DIR": str(directory), "PIFLEET_BACKUP_KEEP": "2"}).start()

    def written():
        names = sorted(p.name for p in directory.glob("pifleet-*.backup"))
        return names if len(names) == 2 and names[0] == "pifleet-20260103T030000Z.backup" else None

    names = wait_until(written, timeout=60, what="the daily backup and the retention", explain=master.log_tail)
    newest = directory / names[1]
    assert newest.stat().st_mode & 0o777 == 0o600
    with tarfile.open(newest) as tar:
        assert {"manifest.json", "database.dump"} <= set(tar.getnames())
    assert (directory / "notes.txt").exists()
    assert "daily backup written" in master.log_text()
