"""Starting the agent: the Wi-Fi join (a router that comes up after the board, a station still at it) and the
check of the MicroPython it runs on.

The virtual board's `network` (micropython/shims/network.py) behaves like the ESP32 port's: attempts that take
time and fail (inputs.json "wifi"), and OSError "Wifi Internal Error" for a connect() while connecting.
"""

import json
import os
import subprocess
import sys

import pytest

from pifleet.sim import VirtualBoard
from pifleet.sim.board import micropython_binary
from pifleet.sim.chip import MACHINE_RESET
from tests.board.conftest import MICROPYTHON_DIR, free_udp_port
from tests.board.test_registration import Directory, directory  # noqa: F401 — the fixture
from tests.support.waits import wait_until, wait_until_async


def _wifi(board, **settings):
    """What the board's Wi-Fi does from now on (read by the shim at every call)."""
    board.io.mkdir(parents=True, exist_ok=True)
    path = board.io / "inputs.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["wifi"] = settings
    path.write_text(json.dumps(data))


async def test_board_keeps_joining_until_the_router_answers(directory, tmp_path):  # noqa: F811
    # The station gives up after each failed attempt (reconnects=1): the agent must call connect() again.
    board = VirtualBoard("t-wifi", tmp_path, role="blind", master=("127.0.0.1", directory.port))
    _wifi(board, join_ms=300, fail=3, reconnects=1)
    board.start()
    try:
        await wait_until_async(
            lambda: directory.registrations,
            timeout=30,
            what="registration after 3 failed joins",
            explain=board.console_text,
        )
        console = board.console_text()
        assert console.count("reason:201") == 3, console
        assert console.count("wifi: joining 'pifleet-sim") >= 4, console  # one look per attempt, the retries shown
        assert "Wifi Internal Error" not in console
        assert "Traceback" not in console
    finally:
        await board.stop_async()


async def test_board_never_connects_while_the_station_is_connecting(directory, tmp_path):  # noqa: F811
    # The port's default: once asked, the station retries by itself and status() stays STAT_CONNECTING; a
    # connect() meanwhile would raise OSError("Wifi Internal Error") (printed by the agent as "wifi: connect:").
    board = VirtualBoard("t-wifi2", tmp_path, role="blind", master=("127.0.0.1", directory.port))
    _wifi(board, join_ms=700, fail=4)
    board.start()
    try:
        await wait_until_async(
            lambda: directory.registrations,
            timeout=30,
            what="registration after a slow join",
            explain=board.console_text,
        )
        console = board.console_text()
        assert console.count("reason:201") == 4, console
        assert "status 1001" in console  # it looked while the station was connecting, and left it alone
        assert "Wifi Internal Error" not in console and "wifi: connect:" not in console, console
    finally:
        await board.stop_async()


def test_agent_stops_with_its_reason_on_an_asyncio_without_io_queue(tmp_path):
    # A MicroPython release whose asyncio lost core._io_queue: one clear line and the agent stops (back at the
    # REPL), before it joins the network; not an AttributeError at the first datagram.
    binary = micropython_binary()
    if binary is None:
        pytest.skip("no micropython binary on this machine (aarch64?)")
    code = 'import asyncio\ndelattr(asyncio.core, "_io_queue")\nimport agent.app\nagent.app.run()\nprint("back")'
    env = dict(os.environ, MICROPYPATH=".frozen:" + str(MICROPYTHON_DIR))
    done = subprocess.run([binary, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "agent: cannot run: this MicroPython's asyncio has no core._io_queue (the agent needs v1.22+)",
        "back",
    ]


def test_an_exception_escaping_the_agent_resets_the_board(tmp_path):
    # A board at the REPL serves nobody until someone power-cycles it: main.py prints what escaped and resets
    # (the shim's machine.reset() prints "machine.reset()" and ends the interpreter).
    binary = micropython_binary()
    if binary is None:
        pytest.skip("no micropython binary on this machine (aarch64?)")
    (tmp_path / "config.json").write_text("{not json")
    env = dict(
        os.environ,
        MICROPYPATH=".frozen:%s:%s" % (MICROPYTHON_DIR / "shims", MICROPYTHON_DIR),
        PIFLEET_SIM_IO=str(tmp_path),
    )
    main = str(MICROPYTHON_DIR / "main.py")
    done = subprocess.run([binary, main], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    lines = done.stdout.splitlines()
    assert lines[0] == "Traceback (most recent call last):", done.stdout + done.stderr
    assert lines[-2].startswith("ValueError") and lines[-1] == "machine.reset()", done.stdout + done.stderr
    assert done.returncode == MACHINE_RESET  # how the virtual chip knows to boot again


def test_mpremote_reaches_a_board_that_is_still_joining(tmp_path):
    # The join never gives up, so Ctrl-C (mpremote's) must end it at the REPL, not in a reset.
    board = VirtualBoard("t-wifi3", tmp_path, role="blind", master=("127.0.0.1", free_udp_port()))
    _wifi(board, join_ms=500, fail=1000)
    board.start()
    try:
        wait_until(
            lambda: board.console_text().count("wifi: joining") >= 2,
            timeout=30,
            what="the board looking for its network twice",
            explain=board.console_text,
        )
        done = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", board.serial_port, "exec", "print(6*7)"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0 and done.stdout.strip() == "42", done.stdout + done.stderr + board.console_text()
        assert "machine.reset()" not in board.console_text()
    finally:
        board.stop()
