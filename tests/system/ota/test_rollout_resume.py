"""A firmware rollout outlives its master. The master is killed (kill -9) twice: while the canary switches to the
new image (it confirms it once the master is back: it needs to register first), and while a board of the first wave
receives the image, with the canary done and another board offline. Started again each time, the rollout goes on:
the canary stays done and is not updated again, the board that was transferring gets the image from its start and
confirms it, and the one that was offline follows when it registers. Real masters, real virtual boards
(tests/system/ota/test_rollout.py)."""

from __future__ import annotations

import pytest

from pifleet.sim.board import VirtualBoard
from tests.support.waits import wait_until
from tests.system.ota.test_rollout import A, add, finished, flash, image, running_version

pytestmark = pytest.mark.timeout(300)

TO = "v1.25.2"


def test_a_rollout_goes_on_after_the_master_is_killed_and_started_again(master_factory, tmp_path):
    master = master_factory().start()
    first, target = add(master, image(A)), add(master, image(TO, size=120_000))  # ~240 blocks: a transfer to cut
    names = ["ota-rs1", "ota-rs2", "ota-rs3"]
    boards = [VirtualBoard(n, tmp_path / n, erased=True, master=master.coap) for n in names]
    try:
        for board in boards:
            board.start()
        for board in boards:
            flash(master, board, first)
        for board in boards:
            wait_until(lambda b=board: master.device(b.name)["online"], timeout=30, what=f"{board.name} online")
        canary, cut, off = boards
        off.stop()  # orderly: it deregisters, the master sees it offline at once
        wait_until(lambda: not master.device("ota-rs3")["online"], timeout=30, what="ota-rs3 offline")

        r = master.post(f"/api/firmware/{target}/rollouts", {"devices": names})
        assert r.status_code == 201, r.text
        url = f"/api/firmware/rollouts/{r.json()['id']}"

        def rows() -> dict[str, dict]:
            return {b["device"]: b for b in master.get(url)["boards"]}

        # 1. while the canary switches: the master is away when it comes back on the new image, on trial
        wait_until(
            lambda: rows()["ota-rs1"]["state"] in ("rebooting", "confirming"),
            timeout=120,
            what="the canary switching",
            explain=lambda: f"{master.get(url)}\n{master.log_tail()}",
        )
        master.kill()
        switching = _rows(master, r.json()["id"])["ota-rs1"][0]
        master.start()
        assert f"firmware rollout {r.json()['id']} resumed (ota-rs1 {switching}, " in master.log_text()

        # 2. the canary done; the first wave: ota-rs2 a third through its image, ota-rs3 waiting for its registration
        wait_until(
            lambda: (
                (now := rows())["ota-rs1"]["state"] == "done"
                and now["ota-rs2"]["state"] == "transferring"
                and now["ota-rs2"]["progress"] >= 30
            ),
            timeout=120,
            what="the canary done and ota-rs2 a third through",
            explain=lambda: f"{master.get(url)}\n{master.log_tail()}",
        )
        master.kill()
        left = _rows(master, r.json()["id"])  # as the killed master left them
        assert [left[n][0] for n in names] == ["done", "transferring", "pending"], left
        assert left["ota-rs3"][2] == "offline: follows when it registers", left
        master.start()
        assert f"firmware rollout {r.json()['id']} resumed (ota-rs1 done, ota-rs2 transferring" in master.log_text()

        # ota-rs2 gets the image again from its start, switches and confirms; the rollout waits for ota-rs3
        wait_until(
            lambda: rows()["ota-rs2"]["state"] == "done",
            timeout=120,
            what="ota-rs2 done after the restart",
            explain=lambda: f"{master.get(url)}\n{master.log_tail()}\n{cut.console_text()[-3000:]}",
        )
        now = master.get(url)
        assert now["state"] == "running", now
        assert now["boards"][2]["state"] == "pending" and now["boards"][2]["reason"].startswith("offline"), now
        off.start()  # back: it registers on A, and the resumed rollout moves it
        done = finished(master, r.json()["id"], boards, timeout=120)
        assert done["state"] == "done", done
        for row in done["boards"]:
            assert (row["state"], row["progress"], row["from_version"], row["to_version"]) == ("done", 100, A, TO)
        for board in boards:
            assert running_version(board) == TO, board.name
        # each board was switched once: one boot of the new image in ota_1 (the canary was not updated again)
        for board in boards:
            assert board.console_text().count("(ota_1)") == 1, board.console_text()[-3000:]
    finally:
        for board in boards:
            board.kill()


def _rows(master, rollout_id: int) -> dict[str, tuple]:
    """The rollout's boards in the database: (state, progress, reason) by name (the master may be down)."""
    import psycopg

    with psycopg.connect(master.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select d.name, b.state, b.progress, b.reason from firmware_rollout_boards b "
            "join devices d on d.id = b.device_id where b.rollout_id = %s",
            (rollout_id,),
        )
        return {name: (state, progress, reason) for name, state, progress, reason in cur.fetchall()}
