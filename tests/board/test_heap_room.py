"""A role switch in place must leave the heap a piece the next datagram fits in: agent/port.py's recvfrom takes 1,280
contiguous bytes. Without one the board spun on recvfrom's MemoryError for good, its watchdog fed by the acker, and
read its socket no more (tools/bench/module_push.py --rollout 20: a board lost in 3 of 11 runs, 34 KB free in holes
of at most 608 bytes, one core at 100 %). Now it restarts into the new version, on a fresh heap."""

from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN
from tests.system.modules.test_push import boots, command, in_sync, rollout_over, running, upload, variant

# What a run of switches left on the 64-bit virtual ESP32, made on purpose: loaded by an in-place switch (agent/role.py
# is loaded then, not at boot), the module fills the heap with 512-byte pieces and lets every other one go. Free
# memory stays (half of it), but in holes of about 560 bytes, none a datagram fits in.
HOLES_IN_PLACE = """
import sys as _sys

_KEPT = []
if "agent.role" in _sys.modules:
    try:
        while True:
            _KEPT.append(bytearray(512))
    except MemoryError:
        pass
    for _i in range(0, len(_KEPT), 2):
        _KEPT[_i] = None
"""


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
