"""`pifleet exec` / `pifleet ls` run mpremote against a virtual board's serial port (its pty)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from pifleet.cli import main
from pifleet.cli.board import resolve_port
from tests.support.waits import wait_until


def test_a_port_path_is_used_as_is():
    assert resolve_port("http://127.0.0.1:1", "/dev/ttyUSB0") == "/dev/ttyUSB0"
    assert resolve_port("http://127.0.0.1:1", "socket://127.0.0.1:4000") == "socket://127.0.0.1:4000"


def test_unknown_name_without_master_says_what_to_do():
    result = CliRunner().invoke(main, ["exec", "blind-1", "print(1)", "--url", "http://127.0.0.1:1"])
    assert result.exit_code != 0 and "pass the serial port itself" in result.output


def test_exec_on_a_virtual_boards_pty(tmp_path):
    from pifleet.sim.board import VirtualBoard

    board = VirtualBoard("repl-1", tmp_path / "repl-1", role="blind", master=("127.0.0.1", 9))
    board.provision()
    board.start()
    try:
        board.wait_ready()
        out = subprocess.run(
            [sys.executable, "-m", "pifleet", "exec", board.serial_port, "print(6 * 7)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "42"
        listed = subprocess.run(
            [sys.executable, "-m", "pifleet", "ls", board.serial_port], capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0 and "config.json" in listed.stdout, listed.stderr
        # after each command the board went back to its agent (a soft reboot at the REPL prompt)
        assert board.console_text().count("MPY: soft reboot") >= 2
        board.wait_ready()
    finally:
        board.stop()


def test_after_exec_and_ls_a_paired_board_is_back_online_by_itself(master, board_factory):
    """Before: the agent was interrupted for the raw REPL and nothing started it again — offline for good."""
    board = board_factory("mp-1", master)
    wait_until(lambda: (d := master.device("mp-1")) and d["online"], what="mp-1 online", explain=board.console_text)
    for command in (["exec", "mp-1", "print(6 * 7)"], ["ls", "mp-1"]):
        starts = board.console_text().count("agent: listening")
        done = subprocess.run(
            [sys.executable, "-m", "pifleet", *command, "--url", master.url],
            capture_output=True,
            text=True,
            timeout=60,
            env=master.env(),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(
            lambda: board.console_text().count("agent: listening") > starts,
            timeout=20,
            what=f"the agent started again after `pifleet {command[0]}`",
            explain=board.console_text,
        )
        wait_until(
            lambda: (d := master.device("mp-1")) and d["online"],
            timeout=20,
            what="mp-1 online again",
            explain=board.console_text,
        )
    device = master.device("mp-1")
    assert device["last_seen"] is not None
