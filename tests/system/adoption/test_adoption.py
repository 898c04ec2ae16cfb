"""Adoption end to end: virtual boards without identity, a real master, the code read off the console."""

from __future__ import annotations

import json
import re

from tests.support.waits import wait_until


def _code(board) -> str:
    m = wait_until(
        lambda: re.search(r"adopt: code ([0-9A-Z]{4}-[0-9A-Z]{4})", board.console_text()),
        timeout=20,
        what=f"{board.name} printing its adoption code",
        explain=board.console_text,
    )
    return m.group(1)


def _adoption(master, board) -> dict:
    mac = ":".join("%02x" % b for b in board.mac)  # the chip's MAC: the station's, as on an ESP32
    return wait_until(
        lambda: next((a for a in master.get("/api/adoptions") if a["mac"] == mac), None),
        what=f"{board.name} waiting for adoption",
        explain=master.log_tail,
    )


def _unpaired(master, tmp_path, name):
    from pifleet.sim.board import VirtualBoard

    board = VirtualBoard(name, tmp_path / "boards" / name, role="blind", master=master.coap)
    board.provision(identity=False)
    board.start()
    return board


def test_unpaired_board_is_adopted_only_with_the_right_code(master, tmp_path):
    board = _unpaired(master, tmp_path, "stray-1")
    other = _unpaired(master, tmp_path, "stray-2")
    try:
        code = _code(board)
        _code(other)
        waiting = _adoption(master, board)
        assert waiting["chip"] == "Generic ESP32 module with ESP32"  # the ESP32 it emulates, not the unix port
        other_adoption = _adoption(master, other)
        assert waiting["state"] == "waiting" and waiting["device_id"] is None
        assert master.get("/api/devices") == []  # nothing registered, no identity handed out

        wrong = "0000-0000" if code != "0000-0000" else "1111-1111"
        r = master.post(f"/api/adoptions/{waiting['id']}/confirm", json={"code": wrong})
        assert r.status_code == 422 and r.json()["field"] == "code", r.text
        assert "4 attempts left" in r.json()["detail"]
        r = master.post(f"/api/adoptions/{waiting['id']}/confirm", json={"code": "nonsense!"})
        assert r.status_code == 400 and r.json()["field"] == "code"  # the schema says so (AdoptionConfirm)

        r = master.post(
            f"/api/adoptions/{waiting['id']}/confirm", json={"code": code.lower(), "name": "adopted-1", "role": "blind"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "adopted" and r.json()["device_id"].startswith("esp-")

        device = wait_until(
            lambda: (d := master.device("adopted-1")) and d["online"] and d["capabilities"] and d,
            timeout=30,
            what="the adopted board registered and online",
            explain=lambda: "board console:\n" + board.console_text()[-3000:],
        )
        assert device["id"] == r.json()["device_id"]
        assert [c["name"] for c in device["capabilities"]] == ["blind"]
        files = board.read_files()  # the littlefs in the board's flash, as a Pi would read it back
        config = json.loads(files["config.json"])
        assert config["device_id"] == device["id"] and config["name"] == "adopted-1"
        assert re.fullmatch(r"[0-9a-f]{64}", config["secret"])
        assert "config.json.new" not in files
        assert "adopt: adopted as" in board.console_text()

        # the unconfirmed board got nothing: still waiting, no identity on it, nothing registered for it
        assert json.loads(other.read_files()["config.json"]).get("device_id") is None
        assert "adopted as" not in other.console_text()
        assert [d["name"] for d in master.get("/api/devices")] == ["adopted-1"]
        assert next(a for a in master.get("/api/adoptions") if a["id"] == other_adoption["id"])["state"] == "waiting"

        r = master.post(f"/api/adoptions/{other_adoption['id']}/reject")
        assert r.status_code == 200 and r.json()["state"] == "rejected"
        wait_until(
            lambda: "the master refused this board" in other.console_text(),
            timeout=15,
            what="the rejected board told so",
            explain=master.log_tail,
        )
        assert json.loads(other.read_files()["config.json"]).get("device_id") is None
    finally:
        board.stop()
        other.stop()


def test_wrong_codes_lock_the_adoption(master, tmp_path):
    board = _unpaired(master, tmp_path, "stray-3")
    try:
        code = _code(board)
        adoption = _adoption(master, board)
        # the dashboard panel and the CLI list it as waiting
        from click.testing import CliRunner

        from pifleet.cli import main

        panel = master.request("GET", "/ui/adoptions").text
        assert "waiting for adoption" in panel and adoption["mac"] in panel
        listed = CliRunner().invoke(main, ["adopt", "list", "--url", master.url, "--token", master.token])
        assert listed.exit_code == 0 and adoption["mac"] in listed.output and "waiting" in listed.output
        wrong = "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"
        for _ in range(5):
            r = master.post(f"/api/adoptions/{adoption['id']}/confirm", json={"code": wrong})
            assert r.status_code == 422
        assert "locked" in r.json()["detail"]
        # even the right code is refused now: a new code comes with the board's next boot
        r = master.post(f"/api/adoptions/{adoption['id']}/confirm", json={"code": code})
        assert r.status_code == 409
        refused = CliRunner().invoke(
            main,
            ["adopt", "confirm", str(adoption["id"]), code, "--url", master.url],
            env={"PIFLEET_TOKEN": master.token},
        )
        assert refused.exit_code != 0 and "locked" in refused.output
        assert master.get("/api/devices") == []
    finally:
        board.stop()
