"""One rule for command parameters on both sides: the master's check (before a job is saved and before it runs)
and the board's (before it acts) refuse the same parameters, naming the same field — the same vectors on the
agent under MicroPython and CPython and on the master."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pifleet.errors import InvalidError
from pifleet.sim.board import micropython_binary

HERE = Path(__file__).parent
AGENT_DIR = HERE.parents[1] / "micropython"
VECTORS = HERE / "schema_vectors.json"
CASES = json.loads(VECTORS.read_text())


def check_params(*args):
    try:  # the master's check, wherever the restructure puts it
        from pifleet.devices.params import check_params
    except ImportError:
        from pifleet.fleet.params import check_params
    return check_params(*args)


def on_the_master() -> list[str | None]:
    out = []
    for case in CASES["cases"]:
        try:
            check_params("cap", case["command"], CASES["schema"], case["params"], "action")
        except InvalidError as e:
            out.append(e.field.removeprefix("action."))
        else:
            out.append(None)
    return out


def on_the_board(runtime: str) -> list[str | None]:
    if runtime == "micropython":
        binary = micropython_binary()
        if binary is None:
            pytest.skip("no micropython binary on this machine (aarch64?); the CPython run still checks the agent")
        argv, env = [binary], dict(os.environ, MICROPYPATH=str(AGENT_DIR))
    else:
        argv, env = [sys.executable], dict(os.environ, PYTHONPATH=str(AGENT_DIR))
    done = subprocess.run(
        [*argv, str(HERE / "schema_runner.py"), str(VECTORS)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_vectors_say_what_each_case_expects():
    assert [case["field"] for case in CASES["cases"]] == on_the_master()


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_the_board_refuses_what_the_master_refuses(runtime):
    got = on_the_board(runtime)
    for case, field in zip(CASES["cases"], got, strict=True):
        assert field == case["field"], case["name"]
