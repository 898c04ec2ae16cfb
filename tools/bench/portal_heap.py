#!/usr/bin/env python3
"""The board's heap in access-point provisioning mode (agent/portal.py, issue 17) and after it closed, on the 32-bit
MicroPython heap32 runs (tools/bench/heap32: the wasm32 build under Node, garbage collected only where asked).

The board is the one board_heap.py boots (flashing's own bundle, agent as .mpy). The steps are the start-up's up to
the Wi-Fi join (agent.app and agent.setup imported: every module the boot path holds then), then the portal: its
module, the Portal, one GET of the captive page (the scan's networks listed) and one POST of the form — read
without a collection in between for the peak — then the portal forgotten, as agent/setup.py does once a network
works. What a board has in C (network, socket, select) is a stand-in; it is there before the baseline, so the
figures are what the agent's code takes.

    python tools/bench/portal_heap.py

Ratios are against the in-run baseline (the heap when join_network starts); the last line holds the figures:
join_b (the baseline), portal_mode_b (in provisioning mode), portal_peak_b (while the page is built and sent),
portal_after_b (after it closed: the interned names stay), portal_mpy_b (its .mpy).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heap32.harness import HarnessError, board_files, wasm32  # noqa: E402

# the radio and the TCP side of a board, in C there (network, socket, select): tiny stand-ins
STANDINS = r"""
import sys
class _Sta:
    def active(self, *a): return True
    def isconnected(self): return False
    def status(self): return 1001
    def connect(self, *a): pass
    def disconnect(self): pass
    def config(self, name=None, **kw): return b"\x24\x0a\x00\x00\x00\x02"
    def ifconfig(self): return ("0.0.0.0",) * 4
    def scan(self):
        return [(b"home", b"\x02\x00\x00\x00\x00\x00", 1, -50, 3, False),
                (b"neighbour", b"\x02\x00\x00\x00\x00\x01", 6, -70, 3, False),
                (b"cafe-guest", b"\x02\x00\x00\x00\x00\x02", 11, -80, 0, False)]
class _Ap:
    def active(self, *a): pass
    def config(self, *a, **kw): pass
    def ifconfig(self): return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "192.168.4.1")
class _Net:
    STA_IF = 0
    AP_IF = 1
    STAT_CONNECTING = 1001
    STAT_WRONG_PASSWORD = 202
    _w = (_Sta(), _Ap())
    @staticmethod
    def WLAN(i=0): return _Net._w[i]
sys.modules["network"] = _Net
class _Conn:
    def __init__(self, data): self.data = data; self.sent = 0
    def settimeout(self, t): pass
    def recv(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out
    def sendall(self, b): self.sent += len(b)
_GET = b"GET / HTTP/1.1\r\nHost: 192.168.4.1\r\nAccept: text/html\r\n\r\n"
_BODY = b"ssid=home&typed=&psk=correct+horse+battery&master=192.168.1.2%3A5683"
_POST = (b"POST / HTTP/1.1\r\nHost: 192.168.4.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
         b"Content-Length: %d\r\n\r\n" % len(_BODY) + _BODY)
"""


def main() -> int:
    interp, root = wasm32()
    try:
        files = board_files()
        for name, data in files.items():
            interp.put(f"{root}/{name}", data)
        interp.run(f"import h32\nh32.install()\nimport os\nos.chdir({root!r})")
        interp.run(STANDINS)
        # the start-up up to the Wi-Fi join: main.py's agent.app, then agent.setup's imports; log.install()
        interp.run("import agent.app\nfrom agent import log, setup\nlog.install()")
        join = interp.heap()
        interp.run(
            "from agent import portal\n"
            "_p = portal.Portal({'secret': '00' * 32, 'wifi': {'nets': [['home', 'x' * 12]]}}, 'config.json', "
            "_Net.WLAN(0))\n"
            "_p.name = 'pifleet-000002'\n"
            "_pw = portal.ap_password('00' * 32)\n"
        )
        loaded = interp.heap()
        # one GET (the page with the scan's networks) and one POST of the form, no collection in between: the peak
        interp.run("import gc\n_c = _Conn(_GET)\n_p.handle(_c)\n_c = _Conn(_POST)\n_p.handle(_c)\n_r = gc.mem_alloc()")
        peak = interp.run("_r = gc.mem_alloc()")
        interp.run("_c = None")
        mode = interp.heap()
        typed = interp.run("_r = repr(_p.typed[0]) + ' ' + repr(_p.typed[2])")
        interp.run("_p = _pw = None\ndel portal\nagent.port.forget('portal')")
        after = interp.heap()
    except HarnessError as exc:
        print(f"portal_heap: {exc}", file=sys.stderr)
        return 1
    finally:
        interp.close()
    mpy = len(files["agent/portal.mpy"])
    print(f"32-bit heap when the Wi-Fi join starts (baseline): {join} B")
    print(f"  portal loaded, Portal made:       {loaded} B  (+{loaded - join} B, x{loaded / join:.3f})")
    print(f"  provisioning mode (page served, form taken: {typed}): {mode} B  (+{mode - join} B, x{mode / join:.3f})")
    print(f"  highest while the page was built and sent: {peak} B  (+{peak - join} B, x{peak / join:.3f})")
    print(f"  after it closed (portal forgotten): {after} B  (+{after - join} B, x{after / join:.3f})")
    print(f"  agent/portal.mpy: {mpy} B")
    print(
        f"join_b={join} portal_mode_b={mode - join} portal_peak_b={peak - join} portal_after_b={after - join} "
        f"portal_mpy_b={mpy}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
