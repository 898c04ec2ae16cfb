"""The agent's mDNS parser against literal packet bytes, under MicroPython and CPython (same file, same result)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pifleet.sim.board import micropython_binary

HERE = Path(__file__).resolve().parent
AGENT = HERE.parents[1] / "micropython"

# A legacy-unicast style answer: no question, 1 answer + 3 additionals, names compressed.
PACKET = bytes.fromhex(
    "0000"
    "8400"
    "0000"
    "0001"
    "0000"
    "0003"  # header: response, AA; an=1, ar=3
    # @12 PTR _coap._udp.local -> pifleet.<@12>
    "055f636f6170"
    "045f756470"
    "056c6f63616c"
    "00"  # _coap._udp.local (offsets 12..29)
    "000c"
    "0001"
    "00001194"
    "000a"
    "07"
    "7069666c656574"
    "c00c"  # @40: pifleet._coap._udp.local
    # @50 SRV <@40> -> 0 0 5683 pi.<@23 local>
    "c028"
    "0021"
    "8001"
    "00000078"
    "000b"
    "0000"
    "0000"
    "1633"
    "02"
    "7069"
    "c017"  # target pi.local @68
    # @73 TXT <@40> "rt=core.rd" "path=/rd"
    "c028"
    "0010"
    "8001"
    "00001194"
    "0014"
    "0a" + "rt=core.rd".encode().hex() + "08" + "path=/rd".encode().hex() +
    # @105 A <@68 pi.local> 192.168.1.10
    "c044"
    "0001"
    "8001"
    "00000078"
    "0004"
    "c0a8010a"
)
NOT_RD = PACKET.replace(b"rt=core.rd", b"rt=core.xx")
LOOP = bytes.fromhex("000084000000000100000000c00c000c0001000000000000")  # @12 -> @12
QUERY = bytes.fromhex(
    "000000000001000000000000055f636f6170045f756470056c6f63616c00000c8001"
)  # a question, not a response


def _run(argv: list[str], env: dict) -> tuple[list, dict]:
    cases = (
        [PACKET.hex(), NOT_RD.hex(), LOOP.hex(), QUERY.hex()]
        + [PACKET[:n].hex() for n in range(len(PACKET))]
        + [bytes([b ^ 0xFF if i == k else b for i, b in enumerate(PACKET)]).hex() for k in range(12, len(PACKET))]
    )
    out = subprocess.run(argv, input=json.dumps(cases), capture_output=True, text=True, env=env, timeout=60, cwd=HERE)
    assert out.returncode == 0, out.stderr + out.stdout
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[0]), json.loads(lines[1])


RUNTIMES = ["micropython", "cpython"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_parser_on_literal_bytes(runtime):
    if runtime == "micropython":
        binary = micropython_binary()
        if binary is None:
            pytest.skip("no micropython binary on this machine")
        argv = [binary, str(HERE / "mdns_runner.py")]
        env = dict(os.environ, MICROPYPATH=f"{AGENT}:.frozen")
    else:
        argv = [sys.executable, str(HERE / "mdns_runner.py")]
        env = dict(os.environ, PYTHONPATH=str(AGENT))
    results, extra = _run(argv, env)
    good, not_rd, loop, query = results[:4]
    assert good["found"] == ["192.168.1.10", 5683]
    assert ["_coap._udp.local", 12, "pifleet._coap._udp.local"] in good["records"]
    assert ["pifleet._coap._udp.local", 33, [5683, "pi.local"]] in good["records"]
    assert ["pifleet._coap._udp.local", 16, {"rt": "core.rd", "path": "/rd"}] in good["records"]
    assert ["pi.local", 1, "192.168.1.10"] in good["records"]
    assert not_rd["found"] is None  # another CoAP service, not a resource directory
    assert loop == {"error": "ValueError"}
    assert query == {"error": "ValueError"}
    # every truncation is refused as malformed; every flipped byte is refused or parsed — never another exception
    truncated = results[4 : 4 + len(PACKET)]
    assert all(r == {"error": "ValueError"} for r in truncated)
    assert not any(r.get("error", "").startswith("other") for r in results)
    if extra["query"] is not None:
        assert bytes.fromhex(extra["query"]) == bytes.fromhex(
            "123400000001000000000000055f636f6170045f756470056c6f63616c00000c8001"
        )
