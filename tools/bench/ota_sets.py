"""The board's 32-bit heap while the master pushes the agent and role modules for another .mpy version (issue 16).

Before a board switches to a MicroPython of another .mpy version, the rollout pushes that version's set beside the
board's own: every file as PUT /ota/set?v=KEY&p=PATH&sha=HEX in 512-byte OSCORE-protected blocks (pifleet
.flashing.sets, micropython/agent/sets.py). Measured on the wasm32 build through tools/bench/heap32 (the paired blind
board as flashing builds it, booted and registered): the heap at the peak of each block of the set (the agent and the
blind built for v1.22.2, key 518, largest file first) and in use after it. Baseline (same run, another board booted
the same way): the peak of a module push's blocks (board_heap.py's push_block_peak_b, a 10 KB module); the ratio is
the set's peak against it.

    python tools/bench/ota_sets.py

Last line: name=value figures.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tools" / "bench"))

from aiocoap.numbers.codes import Code  # noqa: E402
from heap32 import harness  # noqa: E402

from pifleet import resources  # noqa: E402
from pifleet.boardfs.bundle import agent_set  # noqa: E402
from pifleet.boardfs.stems import module_stem  # noqa: E402

VERSION, KEY = "v1.22.2", 518  # another .mpy version than the wasm build's (1.27: 6.3, key 774)


def main() -> None:
    why = harness.node_ready()
    if why:
        raise SystemExit(why)
    source = (resources.capabilities() / "blind.py").read_text()
    files = agent_set(VERSION, {module_stem("blind", source): (source, "")})
    interp, root = harness.wasm32()  # the baseline: a module push to a freshly booted board
    try:
        baseline = harness.measure(interp, root, commands=0, push_kb=10, log=lambda *a: None)
    finally:
        interp.close()
    interp, root = harness.wasm32()  # the set, to another freshly booted board
    try:
        figures = harness.measure(interp, root, commands=0, push_kb=0, log=lambda *a: None)
        standins = figures["standins_b"] - figures["stdlib_b"]
        master = harness.Master(interp)  # a fresh sender: the one inside measure() sent no request
        highs, blocks = [], 0
        for path in sorted(files, key=lambda p: -len(files[p])):
            data = files[path]
            sha = hashlib.sha256(data).hexdigest()
            sent = master.put_blocks("ota/set", data, query=(f"v={KEY}", f"p={path}", f"sha={sha}"))
            highs += sent
            blocks += len(sent)
        listed = master.request(Code.GET, "ota/set")
        if f"[{KEY}]".encode() not in listed.payload:
            raise SystemExit(f"GET /ota/set: {listed.payload!r}")
        after = interp.heap() - standins
    finally:
        interp.close()
    peak, module_peak = max(highs) - standins, baseline["push_block_peak_b"]
    print(f"set for .mpy {KEY}: {len(files)} files, {sum(map(len, files.values()))} bytes, {blocks} blocks")
    print(f"32-bit heap: after boot {figures['boot_b']} B, at the set's peak {peak} B, after it {after} B")
    print(f"baseline: a {baseline['push_mpy_b']}-byte module push's blocks peak at {module_peak} B")
    print(
        f"heap32_boot_b={figures['boot_b']} heap32_set_push_peak_b={peak} heap32_after_set_b={after} "
        f"heap32_module_push_peak_b={module_peak} ratio_peak={peak / module_peak:.2f} set_files={len(files)} "
        f"set_bytes={sum(map(len, files.values()))} set_blocks={blocks}"
    )


if __name__ == "__main__":
    main()
