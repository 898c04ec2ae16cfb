"""Flashing with the OTA layout: the catalog says which images can be updated over the air, `--ota` picks one,
the board boots ota_0 with its agent, identity and role on the vfs the port registers after ota_1."""

from __future__ import annotations

from pifleet.boardfs import layout
from pifleet.sim.board import VirtualBoard
from pifleet.sim.firmware import build_image
from pifleet.sim.flash import Flash
from tests.support.waits import wait_until


def add(master, image: bytes) -> dict:
    r = master.post("/api/firmware", content=image, headers={"content-type": "application/octet-stream"})
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_catalog_records_ota_and_flash_ota_boots_ota_0_with_the_agent_on_vfs(master, tmp_path):
    plain = add(master, build_image("esp32", "v1.24.1"))
    ota = add(master, build_image("esp32", "v1.24.1", ota=True))
    assert (plain["ota"], ota["ota"]) == (False, True)
    board = VirtualBoard("ota-flash", tmp_path / "b", erased=True, master=master.coap)
    board.start()
    try:
        check(master, board, plain, ota)
    finally:
        board.stop()


def check(master, board, plain, ota):
    # --ota with a plain image named: refused before anything is written, naming the field
    wait_until(lambda: any(b["port"] == board.serial_port for b in master.get("/api/boards")), timeout=10)
    body = {"port": board.serial_port, "name": "porch", "role": "blind", "firmware": plain["id"], "ota": True}
    job = master.post("/api/flash", json=body).json()
    job = wait_until(lambda: (j := master.get(f"/api/flash/{job['id']}"))["state"] in ("done", "failed") and j)
    assert job["state"] == "failed" and "no OTA partition table" in job["error"]
    body.pop("firmware")
    job = master.post("/api/flash", json=body).json()
    job = wait_until(
        lambda: (j := master.get(f"/api/flash/{job['id']}"))["state"] in ("done", "failed") and j,
        timeout=60,
        explain=master.log_tail,
    )
    assert job["state"] == "done", job["error"]
    assert job["firmware"] == ota["id"]
    board.wait_ready(30)
    assert "Loaded app from partition at offset 0x10000 (ota_0)" in board.console_text()
    files = layout.read_littlefs(Flash(board.flash_path).read(0x310000, 0xF0000))
    assert b'"role": "blind"' in files["config.json"] or b'"role":"blind"' in files["config.json"]
    wait_until(lambda: (d := master.device("porch")) and d["online"], timeout=30, explain=master.log_tail)
