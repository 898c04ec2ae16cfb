"""`pifleet exec` / `pifleet ls` run mpremote against a virtual board's serial port (its pty)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pifleet.cli import main
from pifleet.cli.board import resolve_port


def test_a_port_path_is_used_as_is():
    assert resolve_port("http://127.0.0.1:1", "/dev/ttyUSB0") == "/dev/ttyUSB0"
    assert resolve_port("http://127.0.0.1:1", "socket://127.0.0.1:4000") == "socket://127.0.0.1:4000"


def test_unknown_name_without_master_says_what_to_do():
    result = CliRunner().invoke(main, ["exec", "blind-1", "print(1)", "--url", "http://127.0.0.1:1"])
    assert result.exit_code != 0 and "pass the serial port itself" in result.output


def test_exec_on_a_virtual_boards_pty(tmp_path):
    import subprocess
    import sys

    from pifleet.sim.board import VirtualBoard

    if not hasattr(VirtualBoard, "serial_port"):
        pytest.skip("VirtualBoard has no serial_port (pty REPL) yet: the sim's pty REPL has not landed")
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
    finally:
        board.stop()
