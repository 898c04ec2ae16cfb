"""Role modules pushed to running boards: block-wise, hash-checked, swapped atomically, loaded without a reboot,
rolled back when they cannot run, rolled out one board first; power loss in the middle of an install."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from pifleet.boardfs.stems import module_stem
from tests.support.masters import REPO
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN

BLIND = (REPO / "capabilities" / "board" / "blind.py").read_text()


def variant(marker: str, extra: str = "") -> str:
    """The shipped blind module with another VERSION (so another content hash) and extra module code."""
    source = re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{marker}"', BLIND, count=1, flags=re.M)
    assert source != BLIND
    return source + "\n" + extra


def device(master, name):
    return master.get(f"/api/devices/{name}")


def running(master, name) -> dict[str, tuple[str, str]]:
    """{capability: (version, module file)} as the master knows it."""
    return {c["name"]: (c["version"], c["module"]) for c in device(master, name)["capabilities"]}


def in_sync(master, name):
    d = device(master, name)
    return d if d["online"] and d["sync"] and d["sync"]["state"] == "in_sync" and d["capabilities"] else None


def upload(master, source: str) -> dict:
    r = master.post("/api/modules", {"filename": "blind.py", "source": source})
    assert r.status_code == 201, r.text
    return r.json()


def rollout_over(master, rollout_id: int) -> dict:
    return wait_until(
        lambda: (r := master.get(f"/api/rollouts/{rollout_id}"))["state"] != "running" and r,
        timeout=60,
        what=f"rollout {rollout_id} to finish",
        explain=master.log_tail,
    )


def boots(board) -> int:
    return board.console_text().count("agent: listening")


async def board_request(board, code, path: str, payload: bytes = b"", **opts) -> aiocoap.Message:
    ctx = await aiocoap.Context.create_client_context()
    try:
        msg = aiocoap.Message(code=code, uri=f"coap://{board.ip}:{board.listen_port}/{path}", payload=payload)
        for key, value in opts.items():
            setattr(msg.opt, key, value)
        return await asyncio.wait_for(ctx.request(msg, handle_blockwise=not opts).response, 20)
    finally:
        await ctx.shutdown()


def filler(functions: int) -> str:
    """Module code that makes a module larger, as real code does: many small functions."""
    return "".join(
        f"def helper_{i}(x):\n    return {{'n': {i}, 'x': x, 'tag': '{os.urandom(8).hex()}'}}\n\n"
        for i in range(functions)
    )


def command(master, device_name: str, cap: str, name: str, **params) -> dict:
    """Run one command on a board through the master (a manual job run now): its execution when finished."""
    job = f"cmd-{os.urandom(4).hex()}"
    spec = {
        "name": job,
        "target": {"device": device_name},
        "trigger": {"type": "manual"},
        "action": {"capability": cap, "command": name, "params": params},
    }
    assert master.post("/api/jobs", spec).status_code == 201
    assert master.post(f"/api/jobs/{job}/run").status_code in (200, 201, 202)
    return wait_until(
        lambda: (e := master.executions(job)) and e[0]["state"] in ("succeeded", "failed") and e[0],
        timeout=20,
        what=f"{cap}.{name} on {device_name}",
        explain=master.log_tail,
    )


def files_on_board(master, device_name: str) -> set[str]:
    return set(master.get(f"/api/devices/{device_name}/modules")["modules"])


def test_changed_module_runs_without_reboot_and_the_master_knows_its_version(master, board_factory):
    board = board_factory("b1", master, role="blind")
    wait_until(lambda: in_sync(master, "b1"), what="b1 in sync with its role", explain=board.console_text)
    before = running(master, "b1")["blind"]
    assert before[1] == module_stem("blind", BLIND)  # flashed with the shipped module: nothing to push

    source = variant("7-test")
    module = upload(master, source)
    assert module["rollout"] is not None and module["stem"] == module_stem("blind", source)
    rollout = rollout_over(master, module["rollout"])
    assert rollout["state"] == "succeeded" and rollout["done"] == ["b1"], rollout

    assert running(master, "b1")["blind"] == ("7-test", module["stem"])
    assert boots(board) == 1, board.console_text()  # loaded in place: the agent never restarted
    # its registration stands, with the new links (RFC 9176 §5.3); the switch's answer said what it runs, so the
    # master read no /cap after it (one at its registration)
    wait_until(lambda: "rd: links updated (role blind)" in board.console_text(), what="b1's links updated")
    assert board.console_text().count("rd: registered as") == 1, board.console_text()
    assert master.log_text().count(f"board {master.device('b1')['id']} offers") == 1, master.log_tail()
    # and that update was the rollout's health check: no GET /stats to the board after the switch
    assert f"{master.device('b1')['id']} healthy: its links update came after the switch" in master.log_text()
    assert files_on_board(master, "b1") == {module["stem"], before[1]}  # the old version stays, as the fallback

    # the new version drives the motor
    since = board.pin_history()[-1][0]
    run = command(master, "b1", "blind", "move", direction="down", seconds=0.4)
    assert run["state"] == "succeeded", run
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN) if a > since] == [0.4]

    # it survives a reboot: the config names the new version
    board.stop()
    board.start()
    wait_until(lambda: boots(board) == 2 and in_sync(master, "b1"), what="b1 back", explain=board.console_text)
    assert command(master, "b1", "blind", "stop")["state"] == "succeeded"
    assert running(master, "b1")["blind"] == ("7-test", module["stem"])


def test_modules_that_cannot_run_are_refused_and_the_board_stays_as_it_was(master, board_factory):
    board = board_factory("b2", master, role="blind")
    wait_until(lambda: in_sync(master, "b2"), what="b2 in sync", explain=board.console_text)
    before = running(master, "b2")

    # raises at import: the board goes back to the old version and says why
    broken = upload(master, variant("8-broken", 'raise RuntimeError("gearbox missing")'))
    rollout = rollout_over(master, broken["rollout"])
    assert rollout["state"] == "halted" and rollout["failed"] == "b2" and "gearbox missing" in rollout["reason"]
    d = device(master, "b2")
    assert d["sync"]["state"] == "failed" and "gearbox missing" in d["sync"]["reason"]
    assert running(master, "b2") == before and d["online"]

    # its self-check fails: the same
    selfcheck = upload(master, variant("8-selftest", "def selftest(blind):\n    raise OSError('no end stop')\n"))
    rollout = rollout_over(master, selfcheck["rollout"])
    assert rollout["state"] == "halted" and "no end stop" in rollout["reason"]
    assert running(master, "b2") == before

    assert files_on_board(master, "b2") == {before["blind"][1]}  # the versions that cannot run are not kept
    # still online and commandable
    assert command(master, "b2", "blind", "stop")["state"] == "succeeded"
    assert device(master, "b2")["online"] and boots(board) == 1


# runs once, then never again: its first setup leaves a mark, and every later one (the next boot) refuses
ONLY_ONCE = """
import os as _os

_setup = setup


def setup(cfg):
    if "_set_up_once" in _os.listdir("caps"):
        raise OSError("the gearbox does not answer after a reboot")
    with open("caps/_set_up_once", "w") as f:
        f.write("1")
    return _setup(cfg)
"""


def test_a_version_that_cannot_start_at_a_later_boot_goes_back_to_the_one_before(master, board_factory):
    board = board_factory("b5", master, role="blind")
    wait_until(lambda: in_sync(master, "b5"), what="b5 in sync", explain=board.console_text)
    before = running(master, "b5")["blind"]
    module = upload(master, variant("9-once", ONLY_ONCE))
    assert rollout_over(master, module["rollout"])["state"] == "succeeded"  # it ran after its push
    assert running(master, "b5")["blind"] == ("9-once", module["stem"])

    board.stop()
    board.start()  # the new version cannot start now: the board runs the one before, and says why
    d = wait_until(
        lambda: (d := device(master, "b5"))["online"] and d["sync"]["state"] == "failed" and d,
        timeout=30,
        what="b5 back, reporting the failed version",
        explain=board.console_text,
    )
    assert "gearbox does not answer" in d["sync"]["reason"] and module["stem"] in d["sync"]["reason"]
    assert running(master, "b5")["blind"] == before
    since = board.pin_history()[-1][0]
    run = command(master, "b5", "blind", "move", direction="down", seconds=0.3)
    assert run["state"] == "succeeded", run
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN) if a > since] == [0.3]
    assert files_on_board(master, "b5") == {before[1]}  # the version that cannot start is gone

    offers = f"board {device(master, 'b5')['id']} offers"  # the master read what a board runs after it registered
    described = master.log_text().count(offers)
    board.stop()
    board.start()  # its config names the old version now: a clean boot, and the master does not push again
    wait_until(
        lambda: boots(board) == 3 and device(master, "b5")["online"],
        timeout=30,
        what="b5 up again",
        explain=board.console_text,
    )
    # The master decides whether to sync right after it has read what the board runs: once it logged that, a sync
    # would begin within a few queries. The short grace is for those, as nothing marks that no sync began.
    wait_until(
        lambda: master.log_text().count(offers) > described,
        what="the master to read what b5 runs after this boot",
        explain=master.log_tail,
    )
    time.sleep(0.5)
    assert running(master, "b5")["blind"] == before and device(master, "b5")["sync"]["state"] == "failed"
    assert "cannot start" not in board.console_text().split("agent: listening")[-1]


# A version that does not fit the running board's heap: MemoryError while the board switches to it in place (then
# agent/role.py is loaded), not at boot. A plain ESP32's heap does that to a ~10 KB module after a while of running:
# no contiguous piece left, though a fresh heap has one (tools/bench/module_push.py --rollout 20 pushes such a
# module for real). Here the module raises it itself, so the test does not hang on one byte of fragmentation.
TOO_BIG_IN_PLACE = """
import sys as _sys

if "agent.role" in _sys.modules:
    raise MemoryError("memory allocation failed, allocating 2672 bytes")
"""


def test_a_version_that_does_not_fit_the_running_heap_is_loaded_after_a_restart(master, board_factory):
    board = board_factory("b10", master, role="blind")
    wait_until(lambda: in_sync(master, "b10"), what="b10 in sync", explain=board.console_text)
    before = running(master, "b10")["blind"]
    module = upload(master, variant("10-big", TOO_BIG_IN_PLACE))
    rollout = rollout_over(master, module["rollout"])
    assert rollout["state"] == "succeeded" and rollout["done"] == ["b10"], (rollout, board.console_text())
    console = board.console_text()
    assert "restarting to load it on a fresh heap" in console and boots(board) == 2, console
    assert running(master, "b10")["blind"] == ("10-big", module["stem"])
    assert device(master, "b10")["sync"]["state"] == "in_sync"
    assert files_on_board(master, "b10") == {module["stem"], before[1]}  # the old version stays, as the fallback
    since = board.pin_history()[-1][0]
    run = command(master, "b10", "blind", "move", direction="down", seconds=0.3)
    assert run["state"] == "succeeded", run
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN) if a > since] == [0.3]


def test_a_switch_waits_for_the_move_under_way(master, board_factory):
    # a person's command (or a run the board makes by itself) is not under the master's device lock: the board lets
    # a move end before it switches to a new version, instead of cutting it short
    board = board_factory("b11", master, role="blind")
    wait_until(lambda: in_sync(master, "b11"), what="b11 in sync", explain=board.console_text)
    since = board.pin_history()[-1][0]
    r = master.post(
        "/api/devices/b11/commands?wait=0",
        {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 4}},
    )
    assert r.status_code == 202, r.text
    wait_until(lambda: board.pin_level(DOWN_PIN) == 1, what="the motor running", explain=board.console_text)
    module = upload(master, variant("11-later"))
    rollout = rollout_over(master, module["rollout"])
    assert rollout["state"] == "succeeded", (rollout, board.console_text())
    assert running(master, "b11")["blind"] == ("11-later", module["stem"])
    assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN) if a > since] == [4.0]


def test_a_module_whose_hash_or_size_is_wrong_is_refused_before_it_is_kept(tmp_path):
    """The board's own checks, spoken to directly (a board not paired with any master speaks plain CoAP)."""
    from pifleet.sim import VirtualBoard

    board = VirtualBoard("lone", tmp_path / "lone", role="blind", master=("127.0.0.1", 9))
    board.start()
    try:
        board.wait_ready()
        before = set(json.loads(asyncio.run(board_request(board, Code.GET, "m")).payload)["modules"])

        # a hash that does not match what arrived: refused, nothing kept
        data = os.urandom(3000)
        answer = asyncio.run(board_request(board, Code.PUT, "m/blind_badbadbad0?sha=" + "0" * 64, data))
        assert answer.code == Code.BAD_REQUEST and json.loads(answer.payload)["field"] == "sha"

        # larger than the free space: refused at the first block, from its Size1
        free = json.loads(asyncio.run(board_request(board, Code.GET, "m")).payload)["free"]
        answer = asyncio.run(
            board_request(
                board,
                Code.PUT,
                "m/blind_huge000000?sha=" + "0" * 64,
                os.urandom(1024),
                block1=BlockOption.BlockwiseTuple(0, True, 6),
                size1=free + 1,
            )
        )
        assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE and answer.opt.size1 < free
        assert json.loads(answer.payload)["field"] == "size"

        listing = json.loads(asyncio.run(board_request(board, Code.GET, "m")).payload)["modules"]
        assert set(listing) == before
    finally:
        board.stop()


def test_rollout_halts_at_the_first_failing_board(master, board_factory):
    boards = [board_factory(f"r{i}", master, role="blind") for i in range(3)]
    for b in boards:
        wait_until(lambda: in_sync(master, b.name), what=f"{b.name} in sync", explain=b.console_text)
    before = {b.name: running(master, b.name) for b in boards}

    module = upload(master, variant("9-bad", "def selftest(blind):\n    raise OSError('relay welded')\n"))
    rollout = rollout_over(master, module["rollout"])
    assert rollout["state"] == "halted" and rollout["failed"] == "r0" and rollout["done"] == []
    assert "relay welded" in rollout["reason"]
    for b in boards:
        assert running(master, b.name) == before[b.name]
    # the ones after the first were never touched
    for name in ("r1", "r2"):
        assert device(master, name)["sync"]["state"] == "in_sync"

    good = upload(master, variant("9-good"))
    rollout = rollout_over(master, good["rollout"])
    assert rollout["state"] == "succeeded" and sorted(rollout["done"]) == ["r0", "r1", "r2"]
    assert rollout["devices"][0] == "r0"
    for b in boards:
        assert running(master, b.name)["blind"] == ("9-good", good["stem"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_loss_during_an_install_boots_a_whole_version(master, board_factory, seed):
    """Pull the power at a random moment while a large module is pushed and switched to: the board boots the
    old version or the new one, complete, and serves."""
    board = board_factory(f"p{seed}", master, role="blind")
    wait_until(lambda: in_sync(master, board.name), what="in sync", explain=board.console_text)
    old = running(master, board.name)["blind"][1]
    module = upload(master, variant(f"10-{seed}", filler(60)))  # about 10 KB of .mpy
    random.seed(seed)
    delay = random.uniform(0.02, 0.6)
    asyncio.run(asyncio.sleep(delay))  # time itself is under test: the power goes at a moment no event picks
    board.kill()
    # the flash as the power cut left it: the config names the old version or the new one, and that file is
    # whole (a module file gets its name only after its hash was checked)
    files = board.read_files()
    stem = json.loads(files["config.json"])["modules"]["blind"]
    assert stem in (old, module["stem"]), (delay, stem)
    assert files[f"caps/{stem}.mpy"][:2] == b"M\x06", (delay, sorted(files))
    board.start()
    wait_until(lambda: boots(board) == 2, what="the board to boot", explain=board.console_text)
    # it runs, and ends up on the new version: the master syncs it when it registers
    wait_until(
        lambda: running(master, board.name).get("blind", ("", ""))[1] == module["stem"] and in_sync(master, board.name),
        timeout=30,
        what="the new version after the reboot",
        explain=board.console_text,
    )
    # nothing half-written or stale left: the new version, and the one it replaced (the fallback)
    assert files_on_board(master, board.name) == {module["stem"], old}


def test_a_module_with_native_code_is_built_for_the_boards_architecture(master, board_factory):
    """@micropython.native is machine code: the board gets a build for the architecture it reports in
    sys.implementation._mpy (x64 for the virtual board, xtensawin for an ESP32), and runs it."""
    board = board_factory("n1", master, role="blind")
    wait_until(lambda: in_sync(master, "n1"), what="n1 in sync", explain=board.console_text)
    native = (
        "import micropython\n\n@micropython.native\ndef scaled(x):\n    return x * 3\n\n"
        "assert scaled(14) == 42\n"
    )  # runs at import: a wrong build would fail right here
    module = upload(master, variant("11-native", native))
    assert module["declared"]["native"] is True
    rollout = rollout_over(master, module["rollout"])
    assert rollout["state"] == "succeeded", rollout
    assert running(master, "n1")["blind"] == ("11-native", module["stem"])
