"""Helpers for the capability tests: commands over CoAP, the MicroPython runner, pin periods, inputs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from pifleet.runtime import free_udp_port
from pifleet.sim.board import SHIMS, micropython_binary

HERE = Path(__file__).parent
REPO = HERE.parents[2]
CAPABILITIES = REPO / "capabilities" / "board"


def start_board(root: Path, name: str, caps: dict, **kw):
    """A virtual board with these capabilities and no master (it keeps trying to register, harmlessly)."""
    from pifleet.sim import VirtualBoard

    if micropython_binary() is None:
        pytest.skip("no micropython binary on this machine")
    board = VirtualBoard(name, root, role=name, caps=caps, master=("127.0.0.1", free_udp_port()), **kw)
    return board


def power_on(board, timeout: float = 15.0) -> None:
    """Start a board and wait for this boot's agent (the console log keeps earlier boots' lines)."""
    import time

    mark = len(board.console_text())
    board.start()
    deadline = time.monotonic() + timeout
    while "agent: listening on" not in board.console_text()[mark:]:
        board.ready()  # raises if the board died
        assert time.monotonic() < deadline, board.console_text()[mark:]
        time.sleep(0.02)


async def command(client: aiocoap.Context, board, cap: str, name: str, **params) -> tuple[Code, dict]:
    """POST /a/CAP/NAME as the master does (a fresh eid, the board's id as ep); (code, JSON answer)."""
    payload = json.dumps({"eid": uuid.uuid4().hex[:12], "ep": board.device_id, "params": params}).encode()
    uri = "coap://%s:%d/a/%s/%s" % (board.ip, board.listen_port, cap, name)
    response = await client.request(aiocoap.Message(code=Code.POST, uri=uri, payload=payload)).response
    return response.code, json.loads(response.payload) if response.payload else {}


async def result(client, board, cap, name, **params) -> dict:
    code, body = await command(client, board, cap, name, **params)
    assert code == Code.CHANGED, (code, body, board.console_text()[-2000:])
    return body["result"]


def pwm_log(io: Path) -> list[tuple[float, int, int, int]]:
    """(seconds, pin, freq, duty_u16) of every PWM change the board made."""
    try:
        lines = (io / "pwm.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [
        (int(t) / 1e9, int(p), int(f), int(d))
        for t, p, f, d in (line.split() for line in lines if len(line.split()) == 4)
    ]


def write_inputs(io: Path, data: dict) -> None:
    """inputs.json, replaced atomically (what VirtualBoard.set_input does, for runs without a board)."""
    io.mkdir(parents=True, exist_ok=True)
    tmp = io / "inputs.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, io / "inputs.json")


def runner(module: str, cfg: dict, steps: list, io: Path, *, background: bool = False):
    """Run a capability module under MicroPython with the shims (cap_runner.py), io files in `io`.

    Returns the parsed output lines, or the Popen when background (read it with finish())."""
    binary = micropython_binary()
    if binary is None:
        pytest.skip("no micropython binary on this machine")
    io.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PIFLEET_SIM_IO=str(io),
        MICROPYPATH=os.pathsep.join([str(CAPABILITIES), str(REPO / "micropython"), str(SHIMS), ".frozen"]),
    )
    argv = [binary, str(HERE / "cap_runner.py"), module, json.dumps(cfg), json.dumps(steps)]
    proc = subprocess.Popen(argv, env=env, cwd=io, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc if background else finish(proc)


def finish(proc: subprocess.Popen, timeout: float = 30) -> list[dict]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
