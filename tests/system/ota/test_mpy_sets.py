"""An update to a MicroPython that loads another .mpy version (issue 16, item 3): the master pushes the agent and
the role's modules built for it beside the board's own before the switch, and the board starts whichever set its
MicroPython loads — the new image its new set, a rolled-back old image its old one.

Image A is MicroPython v1.22.2 (.mpy 6.2, key 518), B v1.24.1 (6.3, key 774). The virtual board runs one unix
port whatever image its chip started; it reports and loads as the image's MicroPython would (shims/_simmpy.py: the
image's sys.implementation._mpy, and a set at the root recorded for another version fails with "incompatible .mpy
file"), so a board that started B with A's agent, or A with B's, would not come up."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pifleet import resources
from pifleet.boardfs import bundle
from pifleet.boardfs.layout import TABLE_OFFSET, build_littlefs, parse_partition_table, read_littlefs
from pifleet.sim.board import VirtualBoard, micropython_binary
from pifleet.sim.firmware import bootloader_offset
from pifleet.sim.flash import Flash
from tests.support.waits import wait_until
from tests.system.ota.test_rollout import add, finished, flash, image, rollout, running_version

pytestmark = pytest.mark.timeout(300)

A, B, BROKEN = "v1.22.2", "v1.24.1", "v1.25.0"


def vfs_offset(f: Flash) -> int:
    """The vfs the port registers after the OTA table's last partition."""
    return max(p.end for p in parse_partition_table(f.read(TABLE_OFFSET, 0xC00)))


def files(board: VirtualBoard) -> dict[str, bytes]:
    """The board's filesystem."""
    f = Flash(board.flash_path, board.flash_size)
    return read_littlefs(f.read(vfs_offset(f), board.flash_size - vfs_offset(f)))


# A board's files around a swap: A's set (key 518) and B's (774), each an agent/ with its record and a caps/ module
A_AGENT, A_CAPS = {"agent/_mpy": "518", "agent/app.mpy": "A"}, {"caps/blind_1.mpy": "a"}
B_AGENT, B_CAPS = {"agent/_mpy": "774", "agent/app.mpy": "B"}, {"caps/blind_1.mpy": "b"}


def under(prefix: str, files: dict[str, str]) -> dict[str, str]:
    return {prefix + path: text for path, text in files.items()}


SWAPPED = {**B_AGENT, **B_CAPS, **under("mpy/518/", {**A_AGENT, **A_CAPS})}


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.skipif(micropython_binary() is None, reason="the MicroPython unix port is not installed")
@pytest.mark.parametrize(
    "before",
    [
        # B's set waits: the first start of B's MicroPython
        {**A_AGENT, **A_CAPS, **under("mpy/774/", {**B_AGENT, **B_CAPS})},
        # the power was cut after A's caps/ was parked
        {**A_AGENT, **under("mpy/518/", A_CAPS), **under("mpy/774/", {**B_AGENT, **B_CAPS})},
        # ... after B's caps/ moved in
        {**A_AGENT, **B_CAPS, **under("mpy/518/", A_CAPS), **under("mpy/774/", B_AGENT)},
        # ... after A's agent/ was parked
        {**B_CAPS, **under("mpy/518/", {**A_AGENT, **A_CAPS}), **under("mpy/774/", B_AGENT)},
        # nothing waits (B's set at the root already): the usual start changes nothing
        SWAPPED,
    ],
    ids=["waiting", "cut-after-caps-parked", "cut-after-caps-moved", "cut-after-agent-parked", "usual-start"],
)
def test_boot_swaps_in_the_set_for_the_running_mpy_version_and_finishes_a_swap_a_power_cut_left(tmp_path, before):
    """boot.py and mpyset_swap.py as a board runs them, in the unix port (.mpy 6.3, key 774)."""
    for path, text in before.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    for name in ("boot.py", "mpyset_swap.py"):
        shutil.copy(resources.agent() / name, tmp_path / name)
    run = subprocess.run(
        [micropython_binary(), "-c", "import boot"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    after = {p: t for p, t in tree(tmp_path).items() if p not in ("boot.py", "mpyset_swap.py")}
    assert after == SWAPPED, run.stdout + run.stderr
    moved = "mpyset_swap: the agent and role modules for .mpy 774 moved in" in run.stdout
    assert moved == (before != SWAPPED), run.stdout


def test_the_virtual_board_does_not_start_an_agent_built_for_another_mpy_version(tmp_path):
    """What makes the test below mean something: image A's MicroPython (.mpy 6.2) with the agent and role built for
    6.3 at the root, and no set for 6.2 beside it, fails at `import agent` as a real board's loader would."""
    board = VirtualBoard("ota-mpy-wrong", tmp_path / "b", erased=True)
    board.io.mkdir(parents=True, exist_ok=True)
    f = Flash(board.flash_path, board.flash_size)
    f.write(bootloader_offset(), image(A))
    who = bundle.Identity("ota-mpy-wrong", "ota-mpy-wrong", "blind", bytes(32), b"\x07")
    caps = {"blind": {"up_pin": 25, "down_pin": 26, "up_s": 20, "down_s": 20}}
    built, _ = bundle.board_files(who, version=B, master=("127.0.0.1", 9), wifi=("pifleet-sim", ""), caps=caps)
    assert built["agent/_mpy"] == b"774"
    f.write(vfs_offset(f), build_littlefs(built, board.flash_size - vfs_offset(f)))
    board.start()
    try:
        wait_until(
            lambda: "ValueError: incompatible .mpy file" in board.console_text(),
            timeout=30,
            what="the agent refused",
            explain=lambda: board.console_text()[-3000:],
        )
        assert "agent: listening" not in board.console_text()
    finally:
        board.kill()


def online(master, board: VirtualBoard) -> dict:
    return wait_until(
        lambda: (d := master.device(board.name)) and d["online"] and d,
        timeout=30,
        what=f"{board.name} online",
        explain=lambda: board.console_text()[-3000:] + master.log_tail(),
    )


def test_an_image_of_another_mpy_version_boots_its_own_agent_and_a_rollback_boots_the_old_one(module_master, tmp_path):
    ids = {v: add(module_master, image(v, no_agent=v == BROKEN)) for v in (A, B, BROKEN)}
    board = VirtualBoard("ota-mpy", tmp_path / "ota-mpy", erased=True, master=module_master.coap)
    board.start()
    try:
        flash(module_master, board, ids[A])
        # A's MicroPython loads .mpy 6.2: the board says so, and its agent was built for it
        assert online(module_master, board)["mpy"] & 1023 == 518
        assert files(board)["agent/_mpy"] == b"518" and not any(p.startswith("mpy/") for p in files(board))

        # 1. an image whose agent cannot start: the master pushes the 6.3 set first; the board starts it, fails,
        # the bootloader goes back to A, and A swaps its own set back in: it serves again
        r = rollout(module_master, ids[BROKEN], devices=[board.name])
        done = finished(module_master, r["id"], (board,))
        assert done["boards"][0]["state"] == "rolled_back", done
        console = board.console_text()
        assert "the agent and role modules for .mpy 774 moved in; those for 518 kept in mpy/518" in console
        assert "the agent and role modules for .mpy 518 moved in; those for 774 kept in mpy/774" in console
        assert running_version(board) == A and online(module_master, board)["mpy"] & 1023 == 518
        r = module_master.post(f"/api/devices/{board.name}/commands", {"capability": "blind", "command": "position"})
        assert r.status_code == 200 and r.json()["state"] == "succeeded", r.text
        on_flash = files(board)
        assert on_flash["agent/_mpy"] == b"518" and on_flash["mpy/774/agent/_mpy"] == b"774"

        # 2. image B: the set for 6.3 again, the switch, B runs its agent from that set and confirms itself
        mark = len(board.console_text())  # the console is cumulative: what follows is looked for after this
        r = rollout(module_master, ids[B], devices=[board.name])
        done = finished(module_master, r["id"], (board,))
        assert done["state"] == "done", f"{done}\n{board.console_text()[-3000:]}"
        assert running_version(board) == B
        assert "for .mpy 774 moved in; those for 518 kept in mpy/518" in board.console_text()[mark:]
        device = online(module_master, board)
        assert device["mpy"] & 1023 == 774
        r = module_master.post(f"/api/devices/{board.name}/commands", {"capability": "blind", "command": "position"})
        assert r.status_code == 200 and r.json()["state"] == "succeeded", r.text
        on_flash = files(board)
        # the root holds B's set, A's waits beside it (the other slot's image still needs it): two sets, no more
        assert on_flash["agent/_mpy"] == b"774" and on_flash["mpy/518/agent/_mpy"] == b"518"
        assert {p.split("/")[1] for p in on_flash if p.startswith("mpy/")} == {"518"}
        stem = next(p for p in on_flash if p.startswith("caps/blind_"))
        pushes = [line for line in module_master.log_text().splitlines() if "beside its own (.mpy 518)" in line]
        assert len(pushes) == 2, pushes  # one set pushed before each of the two switches
        print(pushes[-1].split(": ", 1)[-1])  # its size and time, for docs/flashing.md
        assert "mpy/518/" + stem in on_flash  # the role's module in both sets

        # 3. and back to A by a rollout (a downgrade): A's set pushed anew, A starts it, B's waits beside
        mark = len(board.console_text())
        r = rollout(module_master, ids[A], devices=[board.name])
        done = finished(module_master, r["id"], (board,))
        assert done["state"] == "done", f"{done}\n{board.console_text()[-3000:]}"
        assert running_version(board) == A and online(module_master, board)["mpy"] & 1023 == 518
        assert "for .mpy 518 moved in; those for 774 kept in mpy/774" in board.console_text()[mark:]
        on_flash = files(board)
        assert on_flash["agent/_mpy"] == b"518" and on_flash["mpy/774/agent/_mpy"] == b"774"
    finally:
        board.kill()
