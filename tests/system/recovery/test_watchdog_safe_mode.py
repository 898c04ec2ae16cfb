"""Boards that recover by themselves (issue 14, item 2): a wedged loop is reset by the watchdog and the board comes
back online; three boots in a row that hang before the agent is up give safe mode, which the master shows; a module
push repairs it. The virtual board's watchdog fires after 3 s here (PIFLEET_SIM_WDT_MS), the agent's 30 s on a board."""

from __future__ import annotations

import httpx
import pytest

from tests.support.waits import wait_until
from tests.system.modules.test_push import device, rollout_over, upload, variant

# a master started, a board flashed through it, four watchdog resets and two rollouts: minutes on a loaded CI machine
pytestmark = pytest.mark.timeout(300)

# A blind whose `hang` command wedges the agent's loop (a busy loop in a command: nothing else runs), and whose
# `brick` command does too and leaves a file that makes the module hang at import from then on (a role module that
# cannot boot any more).
WEDGE = """
import os as _os

try:
    _os.stat("brick")
    while True:  # the module hangs at import: every boot from now on fails before the agent is up
        pass
except OSError:
    pass


async def _hang(self):
    # once: the master's CoAP layer may retransmit this request to the board that came back (the effect must be seen
    # once to count the resets)
    try:
        _os.stat("hung")
        return "hung before"
    except OSError:
        pass
    with open("hung", "w") as f:
        f.write("1")
    while True:
        pass


async def _brick(self):
    with open("brick", "w") as f:
        f.write("1")
    while True:
        pass


Blind.hang = _hang
Blind.brick = _brick
COMMANDS["hang"] = {}
COMMANDS["brick"] = {}
"""

FIX = """
import os as _os

try:
    _os.remove("brick")
except OSError:
    pass
"""


def send(master, name: str, command: str) -> None:
    """A command through the master's API; the board never answers it (its loop is wedged)."""
    try:
        master.post(f"/api/devices/{name}/commands?wait=0.2", {"capability": "blind", "command": command, "params": {}})
    except httpx.HTTPError:
        pass


def test_watchdog_resets_a_wedged_board_and_three_failed_boots_give_safe_mode_until_a_push(
    master, board_factory, monkeypatch
):
    monkeypatch.setenv("PIFLEET_SIM_WDT_MS", "3000")
    board = board_factory("wd1", master, role="blind")
    in_sync = lambda: (d := device(master, "wd1"))["online"] and d["sync"] and d["sync"]["state"] == "in_sync" and d  # noqa: E731
    wait_until(in_sync, timeout=30, what="wd1 in sync", explain=board.console_text)
    module = upload(master, variant("9-wedge", WEDGE))
    assert rollout_over(master, module["rollout"])["state"] == "succeeded"

    # a wedged loop: the watchdog resets the board, which comes back by itself and says why it started
    send(master, "wd1", "hang")
    wait_until(
        lambda: board.console_text().count("agent: listening") >= 2 and device(master, "wd1")["online"],
        timeout=30,
        what="wd1 reset by its watchdog and back online",
        explain=board.console_text,
    )
    console = board.console_text()
    assert "WDT: not fed for 3000 ms, resetting" in console and "TG1WDT_SYS_RESET" in console
    seen = []
    stats = wait_until(
        lambda: not seen.append(s := master.get("/api/devices/wd1/stats")) and s["reset_cause"] == "watchdog" and s,
        timeout=20,
        what="wd1's /stats after the watchdog reset",
        explain=lambda: f"last /stats: {seen[-1:]}\n" + board.console_text()[-3000:],
    )
    assert stats["reboots"] == {"power": 1, "watchdog": 1} and stats["safe_mode"] is None, stats

    # a module that hangs at every boot: three failed boots, then safe mode, registered and shown by the master
    send(master, "wd1", "brick")
    d = wait_until(
        lambda: (d := device(master, "wd1"))["online"] and d["safe_mode"] and d["capabilities"] == [] and d,
        timeout=60,
        what="wd1 in safe mode, registered, offering no role module",
        explain=board.console_text,
    )
    assert d["safe_mode"].startswith("3 boots in a row failed before the agent was up"), d["safe_mode"]
    assert "boot: safe mode:" in board.console_text()
    page = master.request("GET", "/devices/wd1")
    assert page.status_code == 200 and "safe mode" in page.text.lower(), page.text[:500]

    # the fix, pushed as any module is: the role runs again and safe mode ends
    fixed = upload(master, variant("9-fixed", FIX))
    assert rollout_over(master, fixed["rollout"])["state"] == "succeeded"
    wait_until(
        lambda: (d := device(master, "wd1"))["online"] and d["safe_mode"] is None and d["capabilities"] and d,
        timeout=30,
        what="wd1 out of safe mode, running the fixed module",
        explain=board.console_text,
    )
    assert "agent: safe mode ends" in board.console_text()
    assert [(c["name"], c["version"]) for c in device(master, "wd1")["capabilities"]] == [("blind", "9-fixed")]
