"""tools/hil/board_check.py, as a person with a board on the desk runs it — here against a virtual ESP32 on its
serial port, through a real master: flashed, registered, one output driven, a module pushed and the role given
back, /stats read; its last line is name=value figures."""

from __future__ import annotations

import subprocess
import sys

from pifleet.sim.board import VirtualBoard
from pifleet.sim.firmware import build_image
from tests.support.masters import REPO
from tests.support.pins import high_periods
from tests.support.waits import wait_until

UP_PIN = 25


def test_board_check_flashes_drives_pushes_and_reads_stats(master, tmp_path):
    image = tmp_path / "esp32.bin"
    image.write_bytes(build_image("esp32", "v1.24.1"))
    board = VirtualBoard("desk", tmp_path / "desk", erased=True, master=master.coap)
    board.start()
    try:
        run = subprocess.run(
            [sys.executable, str(REPO / "tools/hil/board_check.py"), board.serial_port, "--firmware", str(image)]
            + ["--name", "desk", "--url", master.url, "--token", master.token],
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert run.returncode == 0, run.stdout + run.stderr + board.console_text()[-3000:]
        figures = dict(pair.split("=", 1) for pair in run.stdout.strip().splitlines()[-1].split())
        assert figures["ok"] == "1"
        assert int(figures["mem_alloc_b"]) > 0 and int(figures["mem_free_b"]) > 0
        assert float(figures["uptime_s"]) > 0 and float(figures["flash_s"]) > 0
        # restarted by the master: the virtual chip reset and booted again, as an ESP32 does
        assert float(figures["restart_s"]) > 0 and figures["reset_cause"] == "soft"
        assert "rst:0xc (SW_CPU_RESET)" in board.console_text()

        # what the board did: the motor ran up for about 0.2 s, once
        (period,) = high_periods(board.pin_history(), UP_PIN)
        assert 0.15 < period[1] - period[0] < 0.6
        # it has its own role back, in sync, and the check role is gone
        device = master.device("desk")
        assert device["role"] == "blind" and device["sync"]["state"] == "in_sync"
        assert "board-check" not in [r["name"] for r in master.get("/api/roles")]
        assert master.get("/api/modules", params={"name": "boardcheck"})  # the pushed module is in the catalog

        # the board page's Restart button: the actions panel comes back saying so, and the board boots once more
        wait_until(lambda: master.device("desk")["online"], what="desk online", explain=board.console_text)
        panel = master.post("/ui/devices/desk/restart")
        assert panel.status_code == 200 and "desk restarts" in panel.text, panel.text
        wait_until(lambda: board.console_text().count("rst:0xc (SW_CPU_RESET)") == 2, what="a second restart")
    finally:
        board.stop()
