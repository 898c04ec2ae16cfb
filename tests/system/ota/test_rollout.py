"""MicroPython itself updated over the air through the master: virtual boards flashed with the OTA layout get
another image block-wise under OSCORE, switch, and confirm it — or roll back by themselves; rollouts halt at the
first failure. The boards run the real agent in the real MicroPython interpreter; the chip's bootloader is
pifleet.sim.chip's (ESP-IDF's otadata and rollback)."""

from __future__ import annotations

import subprocess
import sys
import time
from functools import cache

import pytest

from pifleet.sim.board import VirtualBoard
from pifleet.sim.firmware import build_image
from tests.support.waits import wait_until

# boards flashed by the master with esptool, then updated and rebooted, some several times
pytestmark = pytest.mark.timeout(300)

A, B = "v1.24.1", "v1.25.0"


@cache
def image(version: str, no_agent: bool = False, size: int = 0) -> bytes:
    return build_image("esp32", version, ota=True, no_agent=no_agent, size=size)


def add(master, data: bytes) -> int:
    r = master.post("/api/firmware", content=data, headers={"content-type": "application/octet-stream"})
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def images(module_master) -> dict[str, int]:
    return {
        "A": add(module_master, image(A)),
        "B": add(module_master, image(B)),
        "broken": add(module_master, image("v1.26.0", no_agent=True)),
        "big": add(module_master, image("v1.25.1", size=600_000)),  # ~1200 blocks: a transfer to cut
    }


@pytest.fixture
def ota_boards(module_master, images, tmp_path):
    """Virtual boards flashed by the master with image A in the OTA layout, online with role blind."""
    made: list[VirtualBoard] = []

    def make(*names: str) -> list[VirtualBoard]:
        boards = []
        for name in names:
            board = VirtualBoard(name, tmp_path / name, erased=True, master=module_master.coap)
            board.start()
            made.append(board)
            boards.append(board)
        for board in boards:  # flash jobs run one after the other on the master; boards boot meanwhile
            flash(module_master, board, images["A"])
        for board in boards:
            wait_until(
                lambda b=board: (d := module_master.device(b.name)) and d["online"],
                timeout=30,
                what=f"{board.name} online",
                explain=lambda b=board: b.console_text()[-3000:] + module_master.log_tail(),
            )
        return boards

    yield make
    for board in made:
        board.kill()


def flash(master, board: VirtualBoard, firmware: int) -> None:
    wait_until(lambda: any(b["port"] == board.serial_port for b in master.get("/api/boards")), timeout=10)
    body = {"port": board.serial_port, "name": board.name, "role": "blind", "firmware": firmware, "ota": True}
    r = master.post("/api/flash", json=body)
    assert r.status_code == 202, r.text
    job = wait_until(
        lambda: (j := master.get(f"/api/flash/{r.json()['id']}"))["state"] in ("done", "failed") and j,
        timeout=60,
        what=f"flashing {board.name}",
        explain=master.log_tail,
    )
    assert job["state"] == "done", job["error"]
    board.device_id, board.role = job["device_id"], "blind"


def rollout(master, firmware: int, **target) -> dict:
    r = master.post(f"/api/firmware/{firmware}/rollouts", target)
    assert r.status_code == 201, r.text
    return r.json()


def finished(master, rollout_id: int, boards=(), timeout: float = 120) -> dict:
    return wait_until(
        lambda: (r := master.get(f"/api/firmware/rollouts/{rollout_id}"))["state"] != "running" and r,
        timeout=timeout,
        what=f"firmware rollout {rollout_id} to finish",
        explain=lambda: "\n".join(
            [str(master.get(f"/api/firmware/rollouts/{rollout_id}")), master.log_tail()]
            + [f"{b.name}:\n{b.console_text()[-2500:]}" for b in boards]
        ),
    )


def running_version(board: VirtualBoard) -> str:
    return board.console_text().rsplit("App version:", 1)[-1].split()[0]


def test_a_board_goes_from_a_to_b_over_the_air_and_keeps_its_identity(module_master, images, ota_boards):
    (board,) = ota_boards("ota-ab")
    before = module_master.device("ota-ab")
    started = time.monotonic()
    # as a person would: the CLI starts the rollout and follows it board by board
    out = subprocess.run(
        [sys.executable, "-m", "pifleet", "firmware", "rollout", str(images["B"]), "--devices", "ota-ab"],
        capture_output=True,
        text=True,
        env=module_master.env(),
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr + board.console_text()[-3000:]
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("firmware rollout ") and lines[-1].endswith(f": done (MicroPython {B})"), lines
    seen = [line.split(": ", 1)[1].split()[0] for line in lines[:-1]]
    assert seen[-1] == "done" and set(seen) <= {"pending", "transferring", "rebooting", "confirming", "done"}, lines
    done = module_master.get(f"/api/firmware/rollouts/{lines[-1].split()[2].rstrip(':')}")
    took = time.monotonic() - started
    assert done["state"] == "done", f"{done}\n{board.console_text()[-3000:]}"
    (row,) = done["boards"]
    assert row["state"] == "done" and row["progress"] == 100
    assert (row["from_version"], row["to_version"]) == (A, B)
    # the board boots B from ota_1 and says so; same identity, online, and it answers OSCORE commands
    assert "Loaded app from partition at offset 0x190000 (ota_1)" in board.console_text()
    assert running_version(board) == B
    after = wait_until(lambda: (d := module_master.device("ota-ab")) and d["online"] and d, timeout=30)
    assert after["id"] == before["id"] and after["role"] == "blind"
    r = module_master.post("/api/devices/ota-ab/commands", {"capability": "blind", "command": "position"})
    assert r.status_code == 200 and r.json()["state"] == "succeeded", r.text
    print(f"rollout to the canary confirmed in {took:.1f} s")
    # a power cycle keeps B: it confirmed itself (valid), it was not left pending verification
    board.kill()
    board.start()
    board.wait_ready(30)
    assert running_version(board) == B and "rollback" not in board.console_text()


def test_an_image_whose_agent_cannot_start_rolls_back_by_itself_and_halts(module_master, images, ota_boards):
    first, second = ota_boards("ota-rb1", "ota-rb2")
    r = rollout(module_master, images["broken"], devices=["ota-rb1", "ota-rb2"])
    done = finished(module_master, r["id"], (first, second))
    assert done["state"] == "halted" and done["reason"].startswith("ota-rb1: "), done
    canary, other = done["boards"]
    assert canary["state"] == "rolled_back" and "did not confirm" in canary["reason"], canary
    assert other["state"] == "pending" and other["progress"] == 0
    # the canary is back on A by itself (the bootloader aborted the unconfirmed image) and serves again
    assert "ABORTED (rollback)" in first.console_text()
    assert running_version(first) == A and running_version(second) == A
    wait_until(lambda: (d := module_master.device("ota-rb1")) and d["online"], timeout=30)
    r = module_master.post("/api/devices/ota-rb1/commands", {"capability": "blind", "command": "position"})
    assert r.status_code == 200, r.text


def power_cycle(board: VirtualBoard) -> None:
    """Off and on again, until the new start has registered. Its console keeps the lines of the start before, so
    wait_ready() (a "listening" line) and the device's `online` (the registration before, still within its lifetime)
    said yes at once: a rollout started then met a board still starting, which refused it (CI, stop 24)."""
    registered = board.console_text().count("rd: registered as")
    board.kill()
    board.start()
    wait_until(
        lambda: board.console_text().count("rd: registered as") > registered,
        timeout=30,
        what=f"{board.name} registered again after its power cycle",
        explain=board.console_text,
    )


def test_power_cut_during_the_transfer_and_during_the_switch_boots_a_then_a_second_rollout_completes(
    module_master, images, ota_boards
):
    import os
    import signal

    (board,) = ota_boards("ota-cut")
    # 1. during the transfer: kill -9 of the board's process at a third of the image
    r = rollout(module_master, images["big"], devices=["ota-cut"])
    wait_until(
        lambda: module_master.get(f"/api/firmware/rollouts/{r['id']}")["boards"][0]["progress"] >= 30,
        timeout=60,
        what="a third of the image sent",
    )
    os.kill(board.pid, signal.SIGKILL)
    power_cycle(board)
    done = finished(module_master, r["id"], (board,))
    assert done["state"] == "halted" and done["boards"][0]["state"] == "failed", done
    board.wait_ready(30)
    assert running_version(board) == A

    # 2. during the switch: the power fails between the erase of the otadata sector and the write of B's entry
    cut = board.flash_path.with_name("flash.bin.cut")
    cut.write_text("set_boot")
    try:
        wait_until(lambda: (d := module_master.device("ota-cut")) and d["online"], timeout=30)
        r = rollout(module_master, images["B"], devices=["ota-cut"])
        wait_until(lambda: "power cut in the middle of the otadata write" in board.console_text(), timeout=60)
    finally:
        cut.unlink()
    power_cycle(board)
    done = finished(module_master, r["id"], (board,))
    assert done["state"] == "halted" and done["boards"][0]["state"] in ("failed", "rolled_back"), done
    board.wait_ready(30)
    assert running_version(board) == A  # otadata[1] was left erased: the bootloader keeps to A's entry

    # 3. a second rollout completes
    wait_until(lambda: (d := module_master.device("ota-cut")) and d["online"], timeout=30)
    done = finished(module_master, rollout(module_master, images["B"], devices=["ota-cut"])["id"], (board,))
    assert done["state"] == "done", done
    assert running_version(board) == B


def test_a_rollout_over_ten_boards_halts_at_the_one_that_fails_leaving_the_rest_on_a(
    module_master, images, ota_boards, tmp_path
):
    names = [f"ota-w{n}" for n in range(10)]
    boards = ota_boards(*names[:4], *names[5:])
    # the one that fails: flashed in the plain layout (no OTA slots), beside the others in the same role
    plain = VirtualBoard(names[4], tmp_path / names[4], erased=True, master=module_master.coap)
    plain.start()
    try:
        from tests.support.boards import flash as flash_plain

        flash_plain(module_master, plain, names[4], "blind")
        wait_until(lambda: (d := module_master.device(names[4])) and d["online"], timeout=30)
        r = rollout(module_master, images["B"], devices=names)
        done = finished(module_master, r["id"], (*boards, plain), timeout=180)
    finally:
        plain.kill()
    rows = {b["device"]: b for b in done["boards"]}
    assert done["state"] == "halted" and done["reason"].startswith(f"{names[4]}: "), done
    assert rows[names[4]]["state"] == "failed" and "no OTA slots" in rows[names[4]]["reason"]
    assert [b["device"] for b in done["boards"]][0] == names[0]  # the canary went first
    # canary and the first wave moved; the wave with the failing board finished its others; the rest stayed on A
    for name in names[:4]:
        assert rows[name]["state"] == "done", rows[name]
    pending = [name for name in names if rows[name]["state"] == "pending"]
    assert pending, done
    for board in boards:
        assert running_version(board) == (B if rows[board.name]["state"] == "done" else A), board.name


def test_a_board_offline_at_the_start_follows_when_it_registers(module_master, images, ota_boards):
    on, off = ota_boards("ota-on", "ota-off")
    off.stop()  # an orderly stop: it deregisters, the master sees it offline at once
    wait_until(lambda: not module_master.device("ota-off")["online"], timeout=30, what="ota-off offline")
    r = rollout(module_master, images["B"], devices=["ota-on", "ota-off"])
    assert [b["device"] for b in r["boards"]] == ["ota-on", "ota-off"]  # the canary is a board that is online

    def waiting():
        now = module_master.get(f"/api/firmware/rollouts/{r['id']}")
        rows = {b["device"]: b for b in now["boards"]}
        # ota-off's reason is written when its own wave starts, a moment after the canary's row says done
        return (
            now["state"] == "running"
            and rows["ota-on"]["state"] == "done"
            and rows["ota-off"]["reason"]
            and rows["ota-off"]
        )

    row = wait_until(waiting, timeout=90, what="the canary done, ota-off waiting", explain=module_master.log_tail)
    assert row["state"] == "pending" and row["reason"] == "offline: follows when it registers"
    off.start()  # back: it registers on A, and the rollout moves it
    done = finished(module_master, r["id"], (on, off))
    assert done["state"] == "done" and [b["state"] for b in done["boards"]] == ["done", "done"], done
    assert running_version(on) == B and running_version(off) == B
