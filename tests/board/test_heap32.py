"""The agent fits a plain ESP32 (docs/agent.md, "Heap"): a paired blind board, booted, driven through 1,000
OSCORE-protected commands, then given a 10 KB module and switched to it, stays within the budget of a board with
about 112 KB of Python heap.

Measured as tools/bench/board_heap.py measures it (tools/bench/heap32): the agent and the role as the .mpy
files flashing builds, in MicroPython's 32-bit wasm build under Node (installed by the test command), with the
master's side played by aiocoap's OSCORE. Heap figures are deterministic: this is not a timed test.
"""

import sys

import pytest

from tests.support.masters import REPO

sys.path.insert(0, str(REPO / "tools" / "bench"))

import board_heap  # noqa: E402
from heap32 import harness  # noqa: E402


@pytest.mark.timeout(600)  # ~1.5 min alone; the 1,000 exchanges are stepped one by one, the push waits for an update
def test_a_paired_blind_board_stays_within_the_32_bit_heap_budget():
    why = harness.node_ready()
    assert why is None, f"the 32-bit MicroPython is missing ({why}): run the README's test command"
    interp, root = harness.wasm32()
    try:
        figures = harness.measure(interp, root, commands=1000, push_kb=10, log=lambda *a: None)
    finally:
        interp.close()
    # registered once, stayed registered through the commands; the 10 KB module does not fit in place, so the
    # board wrote the new role, restarted into it, registered again and answered a command
    assert figures["switch_restart"] == 1
    assert figures["registrations"] == 2
    boot, after = figures["boot_b"], figures["after_b"]
    assert boot <= board_heap.BUDGET["boot"], f"heap32_boot_b={boot} is over its budget of {board_heap.BUDGET['boot']}"
    assert after <= board_heap.BUDGET["after_1000"], (
        f"heap32_after_1000_b={after} is over its budget of {board_heap.BUDGET['after_1000']}"
    )
    push = figures["push_peak_b"]  # the highest of the blocks, the switch's request, and the boot into the new role
    assert push <= board_heap.BUDGET["push_peak"], (
        f"heap32_push_peak_b={push} is over its budget of {board_heap.BUDGET['push_peak']} (the blocks "
        f"{figures['push_block_peak_b']}, the switch {figures['push_switch_b']}, the boot {figures['restart_boot_b']})"
    )
