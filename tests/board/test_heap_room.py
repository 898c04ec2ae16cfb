"""A board's heap must keep a piece the next datagram fits in: agent/port.py's recvfrom takes 1,280 contiguous bytes.
Without one the board spun on recvfrom's MemoryError for good, its watchdog fed by the acker, and read its socket
no more (tools/bench/module_push.py --rollout 20: a board lost in 3 of 11 runs, 34 KB free in holes of at most
608 bytes after in-place switches, one core at 100 %). Now a switch that leaves no such piece restarts into the new
version on a fresh heap, and a receive that finds none for 5 s restarts the board (docs/agent.md, "Room for the next
datagram")."""

import os
import signal
import subprocess
import textwrap
import time

import pytest

from pifleet import resources
from pifleet.runtime import free_udp_port
from pifleet.sim.board import SHIMS, micropython_binary
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN
from tests.system.modules.test_push import boots, command, in_sync, rollout_over, running, upload, variant

# What a run of switches left on the 64-bit virtual ESP32, made on purpose: loaded by an in-place switch (agent/role.py
# is loaded then, not at boot), the module fills the heap with 512-byte pieces and lets every other one go. Free
# memory stays (about half of it), but in holes of about 560 bytes, none a datagram fits in (256 pieces are more
# than the heap holds; a piece of 1,280 bytes that is left is taken too).
HOLES = """
_KEPT = [None] * 256  # sized at once: a list that grows would leave bigger holes where it was
try:
    for _i in range(256):
        _KEPT[_i] = bytearray(512)
except MemoryError:
    pass
for _i in range(0, 256, 2):
    _KEPT[_i] = None
try:  # and whatever piece a datagram would still fit in is taken too
    for _i in range(0, 256, 2):
        _KEPT[_i] = bytearray(1280)
except MemoryError:
    pass
"""
HOLES_IN_PLACE = 'import sys as _sys\n\n_KEPT = []\nif "agent.role" in _sys.modules:\n' + textwrap.indent(HOLES, "    ")


def test_a_switch_that_leaves_no_piece_for_a_datagram_restarts_into_the_new_version(master, board_factory):
    board = board_factory("h1", master, role="blind")
    wait_until(lambda: in_sync(master, "h1"), what="h1 in sync", explain=board.console_text)
    module = upload(master, variant("11-holes", HOLES_IN_PLACE))
    rollout = rollout_over(master, module["rollout"])
    assert rollout["state"] == "succeeded" and rollout["done"] == ["h1"], (rollout, board.console_text())
    console = board.console_text()
    assert "it left no room for a datagram" in console, console
    assert "restarting to load it on a fresh heap" in console, console
    assert boots(board) == 2, console
    assert running(master, "h1")["blind"] == ("11-holes", module["stem"])
    # it reads its socket: a command gets through and the blind moves once
    since = board.pin_history()[-1][0]
    run = command(master, "h1", "blind", "move", direction="down", seconds=0.3)
    assert run["state"] == "succeeded", (run, board.console_text())
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN) if a > since] == [0.3]


# The same holes, made in the unix port around agent/port.py's recvfrom, with a datagram waiting in the socket.
STARVED = (
    """
import asyncio, gc, machine, socket  # machine: a board has it from its boot on
from agent import port

sock = port.udp_socket("127.0.0.1", %d)
addr = port.sockaddr("127.0.0.1", %d)
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
"""
    + HOLES.replace("%", "%%")
    + """
gc.collect()
print("free", gc.mem_free())
peer.sendto(b"x" * 600, addr)
asyncio.run(port.recvfrom(sock, 1280))
print("received")
"""
)


@pytest.mark.skipif(micropython_binary() is None, reason="the MicroPython unix port (micropython) is not installed")
def test_a_board_whose_heap_has_no_piece_for_a_datagram_restarts_instead_of_spinning(tmp_path):
    script = tmp_path / "starved.py"
    listen = free_udp_port()
    script.write_text(STARVED % (listen, listen))
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(["", ".frozen", str(SHIMS), str(resources.agent())]))
    t = time.monotonic()
    done = subprocess.run(
        [micropython_binary(), "-X", "heapsize=96k", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - t
    out = done.stdout + done.stderr
    assert "free" in out and "received" not in out, out  # holes: free memory, but no datagram fits
    assert "port: no room: restarting" in out and "machine.reset()" in out, out
    assert done.returncode == -signal.SIGUSR2, out  # the virtual chip's reset (micropython/shims/machine.py)
    assert 5 <= took < 20, took
