"""The board's CoAP codec against literal bytes, in MicroPython and in CPython, cross-checked with aiocoap."""

import json
import os
import subprocess
import sys
from pathlib import Path

import aiocoap
import pytest
from aiocoap.optiontypes import BlockOption

from pifleet.sim.board import micropython_binary

HERE = Path(__file__).parent
AGENT_DIR = HERE.parents[1] / "micropython"
VECTORS = HERE / "codec_vectors.json"
CASES = json.loads(VECTORS.read_text())


def run_codec(runtime):
    if runtime == "micropython":
        binary = micropython_binary()
        if binary is None:
            pytest.skip("no micropython binary on this machine (aarch64?); CPython run still checks the codec")
        argv = [binary, str(HERE / "codec_runner.py"), str(VECTORS)]
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(AGENT_DIR), ".frozen"]))
    else:
        argv = [sys.executable, str(HERE / "codec_runner.py"), str(VECTORS)]
        env = dict(os.environ, PYTHONPATH=str(AGENT_DIR))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module", params=["micropython", "cpython"])
def results(request):
    return run_codec(request.param)


def test_decodes_literal_bytes(results):
    for case, got in zip(CASES["decode"], results["decode"]):
        assert got.get("msg") == case["msg"], case["name"]
        assert got["roundtrip"] == case["hex"], case["name"]


def test_malformed_datagrams_raise_a_value_error(results):
    for case, got in zip(CASES["malformed"], results["malformed"]):
        assert got == {"error": True, "is_value_error": True}, case["name"]


def test_encodes_to_literal_bytes(results):
    assert results["encode"] == [case["hex"] for case in CASES["encode"]]


def test_uint_option_values(results):
    assert results["uint"] == [[hexval, value] for value, hexval in CASES["uint"]]


def test_block_option_values(results):
    """RFC 7959 §2.2: NUM << 4 | M << 3 | SZX, in 0 to 3 bytes; longer is malformed."""
    assert results["block"] == [[h, [n, m, s]] for n, m, s, h in CASES["block"]]
    assert results["block_malformed"] == [{"error": True, "is_value_error": True}] * len(CASES["block_malformed"])


@pytest.mark.parametrize("case", CASES["block"], ids=lambda c: c[3] or "empty")
def test_block_vectors_agree_with_aiocoap(case):
    num, more, szx, hexval = case
    option = BlockOption(23)
    option.decode(bytes.fromhex(hexval))
    assert option.value == (num, more, szx)
    assert option.encode().hex() == hexval


@pytest.mark.parametrize("case", CASES["decode"] + CASES["encode"], ids=lambda c: c["name"])
def test_vectors_agree_with_aiocoap(case):
    """The literal bytes are what an independent implementation reads too."""
    msg = aiocoap.Message.decode(bytes.fromhex(case["hex"]))
    assert msg.mtype.value == case["msg"]["type"]
    assert int(msg.code) == case["msg"]["code"]
    assert msg.mid == case["msg"]["mid"]
    assert msg.token.hex() == case["msg"]["token"]
    assert msg.payload.hex() == case["msg"]["payload"]
    assert [[int(o.number), o.encode().hex()] for o in msg.opt.option_list()] == sorted(
        case["msg"]["options"], key=lambda o: o[0]
    )
