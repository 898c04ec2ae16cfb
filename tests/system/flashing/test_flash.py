"""Flash & pair against virtual chips with real esptool, through the master's REST API and CLI.

The chip is the sim's ROM loader on a pty (pifleet.sim.chip), announced on the virtual "USB bus"; the master is
a real `pifleet serve` process on a real PostgreSQL. What was written is read back from the chip's flash file.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import asyncpg
import pytest

from pifleet.boardfs import layout
from pifleet.sim.firmware import build_image
from tests.support.masters import REPO
from tests.support.waits import wait_until
from tests.system.flashing.chips import CutPort, DeafPort, UsbChip, WornFlash

VFS = (0x200000, 0x200000)


@pytest.fixture
def chips(tmp_path):
    made = []

    def make(name: str, **kw) -> UsbChip:
        chip = UsbChip(name, tmp_path / name, **kw)
        made.append(chip)
        return chip

    yield make
    for chip in made:
        chip.close()


def add_firmware(master, image: bytes) -> dict:
    r = master.post("/api/firmware", content=image, headers={"content-type": "application/octet-stream"})
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture(scope="module")
def esp32_fw(module_master) -> dict:
    return add_firmware(module_master, build_image("esp32", "v1.24.1"))


def listed(master, port: str) -> dict | None:
    return next((b for b in master.get("/api/boards") if b["port"] == port), None)


def flash(master, port: str, name: str, role: str = "blind", **extra) -> dict:
    wait_until(lambda: listed(master, port), timeout=5, what=f"{port} on the USB board list", explain=master.log_tail)
    r = master.post("/api/flash", json={"port": port, "name": name, "role": role, **extra})
    assert r.status_code == 202, r.text
    job = r.json()
    return wait_until(
        lambda: (j := master.get(f"/api/flash/{job['id']}"))["state"] in ("done", "failed") and j,
        timeout=60,
        what="the flash job to finish",
        explain=master.log_tail,
    )


def devices_with_mac(master, mac: str) -> list[dict]:
    async def query():
        conn = await asyncpg.connect(master.database_url)
        try:
            return [
                dict(r)
                for r in await conn.fetch(
                    "select d.id, d.name, d.role, d.mac, s.secret is not null as has_secret from devices d "
                    "left join device_secrets s on s.device_id = d.id where d.mac = $1",
                    mac,
                )
            ]
        finally:
            await conn.close()

    return asyncio.run(query())


def board_files(chip: UsbChip) -> dict[str, bytes]:
    return layout.read_littlefs(chip.read(*VFS))


def test_usb_board_listed_within_two_seconds_and_probed(module_master, chips):
    chip = chips("listed")
    started = time.monotonic()
    board = wait_until(
        lambda: listed(module_master, chip.port),
        timeout=5,
        what="the board on the list",
        explain=module_master.log_tail,
    )
    assert time.monotonic() - started < 2.5
    assert board["bridge"] == "virtual" and board["probe"] is None
    r = module_master.post("/api/boards/probe", json={"port": chip.port})
    assert r.status_code == 200, r.text
    probe = r.json()["probe"]
    assert probe["chip"] == "ESP32" and probe["mac"] == chip.mac_text and probe["flash_size"] == 4 * 1024 * 1024


def test_flash_clean_board_then_reflash_keeps_identity_and_factory_reset_changes_it(module_master, esp32_fw, chips):
    chip = chips("clean")
    image = build_image("esp32", "v1.24.1")
    job = flash(module_master, chip.port, "porch-blind", firmware=esp32_fw["id"])
    assert job["state"] == "done", job["error"]
    assert job["progress"] == 100 and job["chip"] == "ESP32" and job["mac"] == chip.mac_text
    assert job["bytes"] == len(image) + VFS[1] and 0 < job["bytes_sent"] < job["bytes"]
    expected_id = "esp-" + chip.mac.hex()  # the one identity scheme (devices/pairing.py)
    assert job["device_id"] == expected_id

    # what the board holds: the base image at 0x1000, the bundle in vfs
    assert chip.read(0x1000, len(image)) == image
    files = board_files(chip)
    config = json.loads(files["config.json"])
    assert config["device_id"] == expected_id and config["name"] == "porch-blind" and config["role"] == "blind"
    assert config["master"] == {"host": "127.0.0.1", "port": module_master.coap_port}
    assert config["caps"]["blind"]["up_pin"] == 25
    secret = config["secret"]
    assert len(bytes.fromhex(secret)) == 32
    blind = f"caps/{config['modules']['blind']}.mpy"
    assert {"boot.py", "main.py", "agent/app.mpy", "agent/coap.mpy", blind} <= set(files)
    assert all(files[f][:2] == b"M\x06" for f in files if f.endswith(".mpy"))  # .mpy v6 (MicroPython ≥ 1.19)
    assert not any(f.startswith("agent/") and f.endswith(".py") for f in files)
    wait_until(
        lambda: chip.chip.state == "running",
        timeout=5,
        what="the chip to boot what was written",
        explain=module_master.log_tail,
    )

    # the master knows the device: identity, role, MAC, secret (never in the API)
    [row] = devices_with_mac(module_master, chip.mac_text)
    assert row["id"] == expected_id and row["role"] == "blind" and row["has_secret"]
    device = module_master.device("porch-blind")
    assert device is not None and device["role"] == "blind" and "secret" not in json.dumps(device)
    assert secret not in json.dumps(module_master.get(f"/api/flash/{job['id']}"))
    assert secret not in module_master.log_text()
    board = listed(module_master, chip.port)
    assert board["device_name"] == "porch-blind" and board["device_id"] == expected_id

    # re-flash: same identity, but new keys (its OSCORE sequence numbers start over with the erased flash)
    first_oscore_id = json.loads(board_files(chip)["config.json"])["oscore_id"]
    again = flash(module_master, chip.port, "porch-blind")
    assert again["state"] == "done", again["error"]
    assert again["device_id"] == expected_id
    config = json.loads(board_files(chip)["config.json"])
    assert config["device_id"] == expected_id and config["secret"] != secret
    assert config["oscore_id"] != first_oscore_id  # sender ids are never reused either
    secret = config["secret"]

    # factory reset: a new identity and secret; the old one is forgotten
    reset = flash(module_master, chip.port, "porch-blind", factory_reset=True)
    assert reset["state"] == "done", reset["error"]
    config = json.loads(board_files(chip)["config.json"])
    assert config["device_id"] == reset["device_id"] != expected_id
    assert config["secret"] != secret
    [row] = devices_with_mac(module_master, chip.mac_text)
    assert row["id"] == reset["device_id"]
    assert module_master.device("porch-blind")["id"] == reset["device_id"]


def test_an_image_older_than_the_agent_is_refused_naming_both_versions(module_master):
    """`pifleet firmware add` of an old board's image (older ESP-IDF: the version only in its banner)."""
    before = module_master.get("/api/firmware")
    r = module_master.post(
        "/api/firmware",
        content=build_image("esp32", "v1.16", old_idf=True),
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"] == "file" and "v1.16" in problem["detail"] and "v1.22.0" in problem["detail"]
    assert module_master.get("/api/firmware") == before  # nothing was added


def test_image_for_another_chip_is_refused_before_writing(module_master, chips):
    s3 = add_firmware(module_master, build_image("esp32s3", "v1.24.1"))
    assert s3["chip"] == "ESP32-S3" and s3["offset"] == 0
    chip = chips("wrongchip")
    job = flash(module_master, chip.port, "wrong-chip", firmware=s3["id"])
    assert job["state"] == "failed"
    assert "ESP32-S3" in job["error"] and "refused before writing" in job["error"]
    assert chip.read(0, 0x10000) == b"\xff" * 0x10000
    assert chip.read(*VFS) == b"\xff" * VFS[1]
    assert devices_with_mac(module_master, chip.mac_text) == []
    assert module_master.device("wrong-chip") is None


def test_catalog_entry_whose_file_changed_is_refused(module_master, chips):
    entry = add_firmware(module_master, build_image("esp32", "v1.23.0"))
    path = module_master.data_dir / "firmware" / entry["filename"]
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    chip = chips("tampered")
    wait_until(lambda: listed(module_master, chip.port), timeout=5, explain=module_master.log_tail)
    try:
        r = module_master.post(
            "/api/flash", json={"port": chip.port, "name": "tampered", "role": "blind", "firmware": entry["id"]}
        )
    finally:
        path.write_bytes(original)
    assert r.status_code == 409 and r.json()["field"] == "firmware"
    assert "SHA-256" in r.json()["detail"]
    assert chip.read(0, 0x10000) == b"\xff" * 0x10000


def test_board_that_never_answers_the_sync(module_master, esp32_fw):
    deaf = DeafPort("deaf")
    try:
        started = time.monotonic()
        job = flash(module_master, deaf.port, "deaf-board")
        assert job["state"] == "failed"
        assert f"no answer from the bootloader on {deaf.port}" in job["error"] and "download mode" in job["error"]
        assert time.monotonic() - started < 30
        assert module_master.device("deaf-board") is None and job["device_id"] is None
    finally:
        deaf.close()


def test_port_vanishes_mid_flash_then_a_retry_succeeds(module_master, esp32_fw, chips):
    chip = chips("cut")
    cut = CutPort(chip, cut_after=2500)  # after the sync and probe, during the write
    try:
        job = flash(module_master, cut.port, "cut-board")
    finally:
        cut.close()
    assert job["state"] == "failed"
    assert "lost the board" in job["error"] and "flash again" in job["error"], job["error"]
    assert devices_with_mac(module_master, chip.mac_text) == []
    assert module_master.device("cut-board") is None
    retry = flash(module_master, chip.port, "cut-board")
    assert retry["state"] == "done", retry["error"]
    assert json.loads(board_files(chip)["config.json"])["name"] == "cut-board"


def test_verify_mismatch_is_an_error_and_records_nothing(module_master, esp32_fw, chips):
    chip = chips("worn", flash_cls=WornFlash)
    job = flash(module_master, chip.port, "worn-board")
    assert job["state"] == "failed"
    assert "verify failed" in job["error"] and "MD5" in job["error"], job["error"]
    assert devices_with_mac(module_master, chip.mac_text) == []


def test_a_late_progress_note_never_reopens_a_finished_flash(module_master):
    """The flashing thread's progress notes reach the database on their own; under load the last one ("verifying")
    once landed after "done", and the dashboard showed the flash verifying forever (CI, 2026-11-27)."""
    from pifleet.flashing import storage as q

    async def run() -> tuple[str, int, bool]:
        conn = await asyncpg.connect(module_master.database_url)
        try:
            job = await q.create_job(
                conn, port="/dev/ttyUSB9", name="late", role="blind", firmware_id=None, factory_reset=False
            )
            await q.update_job(conn, job.id, state="writing", progress=50)
            assert await q.update_job(conn, job.id, state="done", progress=100)
            changed = await q.update_job(conn, job.id, state="verifying", progress=99)  # the late note
            after = await q.get_job(conn, job.id)
            return after.state, after.progress, changed
        finally:
            await conn.close()

    assert asyncio.run(run()) == ("done", 100, False)


def test_bad_requests_name_the_field(module_master, chips):
    chip = chips("badreq")
    wait_until(lambda: listed(module_master, chip.port), timeout=5, explain=module_master.log_tail)
    cases = [
        ({"port": "/dev/nothing", "name": "x", "role": "blind"}, 404, "port"),
        ({"port": chip.port, "name": "x", "role": "toaster"}, 422, "role"),
        ({"port": chip.port, "name": "bad name!", "role": "blind"}, 400, "name"),
        ({"port": chip.port, "name": "x", "role": "blind", "firmware": 999999}, 404, "firmware"),
    ]
    for body, status, field in cases:
        r = module_master.post("/api/flash", json=body)
        assert (r.status_code, r.json().get("field")) == (status, field), r.text


def test_cli_boards_firmware_and_flash(module_master, esp32_fw, chips, tmp_path):
    url = module_master.url

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pifleet", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=90,
            env=module_master.env(),
        )

    listing = cli("firmware", "list", "--url", url)
    assert listing.returncode == 0 and "ESP32" in listing.stdout and "v1.24.1" in listing.stdout
    bad = tmp_path / "not-firmware.bin"
    bad.write_bytes(b"hello" * 100)
    added = cli("firmware", "add", str(bad), "--url", url)
    assert added.returncode != 0 and "not an ESP firmware image" in added.stderr

    chip = chips("cli")
    wait_until(lambda: listed(module_master, chip.port), timeout=5, explain=module_master.log_tail)
    boards = cli("boards", "--probe", "--url", url)
    assert boards.returncode == 0 and chip.port in boards.stdout and chip.mac_text in boards.stdout
    done = cli("flash", chip.port, "--name", "cli-blind", "--role", "sensor", "--url", url)
    assert done.returncode == 0, done.stderr
    assert "esp-" + chip.mac.hex() in done.stdout
    assert json.loads(board_files(chip)["config.json"])["caps"] == {"temperature": {"pin": 34}}

    deaf = DeafPort("cli-deaf")
    try:
        wait_until(lambda: listed(module_master, deaf.port), timeout=5, explain=module_master.log_tail)
        failed = cli("flash", deaf.port, "--name", "cli-deaf", "--role", "blind", "--url", url)
    finally:
        deaf.close()
    assert failed.returncode != 0 and "no answer from the bootloader" in failed.stderr


def test_virtual_board_boots_what_was_flashed_and_comes_online(module_master, esp32_fw, tmp_path):
    """The whole story: an erased virtual ESP32 on the USB bus, flashed by the master with real esptool, boots
    MicroPython from its flash, and registers with the identity and role of its bundle."""
    from pifleet.sim import VirtualBoard

    board = VirtualBoard("fresh-board", tmp_path / "fresh", erased=True)
    board.start()
    try:
        started = time.monotonic()
        job = flash(module_master, board.serial_port, "living-blind", role="blind")
        assert job["state"] == "done", job["error"]
        device = wait_until(
            lambda: (d := module_master.device("living-blind")) and d["online"] and d["capabilities"] and d,
            timeout=60,
            what="the flashed board online",
            explain=module_master.log_tail,
        )
        flash_to_online = time.monotonic() - started
        assert device["id"] == job["device_id"] and device["role"] == "blind"
        assert [c["name"] for c in device["capabilities"]] == ["blind"]
        assert device["firmware"] and device["mpy"]
        assert flash_to_online < 60
    finally:
        board.stop()
