"""The same agent files under CPython (a process target, or a Pi without the unix port), and the shims' WDT."""

import json
import os
import signal
import subprocess
import sys

import pytest
from aiocoap.numbers.codes import Code

from pifleet.sim import VirtualBoard
from pifleet.sim.board import SHIMS, WATCHDOG_RESET, micropython_binary
from tests.board.conftest import free_udp_port, request


@pytest.mark.parametrize("sigint", ["default", "ignored"])
async def test_agent_serves_under_cpython(tmp_path, coap_client, sigint):
    """Also when started from a background shell, which hands SIGINT down as ignored: the orderly stop (SIGINT)
    must still work (CI launched that way once, and the CPython agents never stopped)."""
    board = VirtualBoard("t-cpy", tmp_path, role="blind", master=("127.0.0.1", free_udp_port()), runtime="cpython")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if sigint == "ignored" else None
    try:
        board.start()
        await board.wait_ready_async()  # the interpreter has started: it inherited what SIGINT was then
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, before)
    try:
        await board.wait_ready_async()
        assert "running the agent under CPython" in board.console_text()
        base = "coap://%s" % board.ip
        cap = json.loads((await request(coap_client, Code.GET, base + "/cap")).payload)
        assert cap["caps"][0]["name"] == "blind"
        payload = json.dumps({"eid": "c-1", "params": {"direction": "up", "seconds": 0.2}}).encode()
        response = await request(coap_client, Code.POST, base + "/a/blind/move", payload)
        assert json.loads(response.payload)["result"]["stopped"] == "elapsed"
        assert board.pin_level(25) == 0 and [p for _, p, v in board.pin_history() if v] == [25]
    finally:
        await board.stop_async()
    assert "agent: stopped" in board.console_text()


def _run_watchdog(argv, env_key, tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        "import time\nfrom machine import WDT\nw = WDT(timeout=200)\nw.feed()\nwhile True:\n    time.sleep(0.01)\n"
    )
    env = dict(os.environ, PIFLEET_SIM_IO=str(tmp_path), **{env_key: str(SHIMS) + os.pathsep + ".frozen"})
    return subprocess.run(argv + [str(script)], env=env, capture_output=True, text=True, timeout=10)


def test_watchdog_resets_a_hung_board(tmp_path):
    runs = [([sys.executable], "PYTHONPATH")]
    if micropython_binary():
        runs.append(([micropython_binary()], "MICROPYPATH"))
    for argv, key in runs:
        done = _run_watchdog(argv, key, tmp_path)
        assert done.returncode == WATCHDOG_RESET, (argv, done.stdout, done.stderr)
        assert "WDT: not fed" in done.stdout
