"""Commands over a link that loses 30 % of the datagrams each way: a virtual blind in its own network namespace,
tc netem on its veth pair (docs/agent.md, "A board behind a lossy link")."""

from __future__ import annotations

import pytest

from pifleet.model import FINAL_STATES
from pifleet.sim.netns import NetemError
from tests.support.pins import high_periods, never_both_high
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN
from tests.system.e2e.test_blind_job import online_with_caps

COMMANDS = 6
MOVE_S = 0.2


@pytest.mark.timeout(480)  # six runs with up to six attempts each over a 30 % loss link: minutes on a loaded machine
def test_commands_over_a_30_percent_loss_link_move_the_blind_once_each(lan, master_factory, board_factory):
    link = lan.add()
    try:
        # Where the kernel has no sch_netem, the loss alone is applied (cls_bpf) and said so: the loss is what
        # this test is about; without either it is skipped with the reason.
        how = link.impair("loss 30%", loss_only=True)
    except NetemError as exc:
        pytest.skip(str(exc))
    print(f"link {link.name}: {how}")
    master = master_factory(coap_host=lan.host_ip, environ={"PIFLEET_MDNS": "0"}).start()
    # lifetime 15 s: a registration update every 5 s, so a board a lost answer marked offline is back soon
    board = board_factory("lossy-1", master, role="blind", lifetime=15, ip=link.ip, netns=link.name)
    wait_until(
        lambda: online_with_caps(master, "lossy-1"),
        timeout=120,
        what="lossy-1 online",
        explain=lambda: board.console_text()[-4000:] + master.log_tail(),
    )

    # The retry budget of each command: CoAP's own retransmissions (RFC 7252: ACK_TIMEOUT 2 s, doubling) within
    # a 21 s timeout — four transmissions, each exchange getting through with 0.7 x 0.7 = 0.49 — and then up to
    # six attempts of the run, 3 s apart; the board knows each execution id, so a repeated attempt does not move
    # the blind again.
    job = {
        "name": "lossy",
        "target": {"device": "lossy-1"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": MOVE_S}},
        "trigger": {"type": "manual"},
        "retry": {"attempts": 6, "backoff_s": 3},
        "timeout_s": 21,
    }
    assert master.post("/api/jobs", job).status_code == 201, master.log_tail()
    runs = []
    for i in range(COMMANDS):
        r = master.post("/api/jobs/lossy/run")
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        run = wait_until(
            lambda: (e := master.get(f"/api/executions/{run_id}"))["state"] in FINAL_STATES and e,
            timeout=240,
            what=f"run {i + 1} of {COMMANDS} to finish",
            explain=master.log_tail,
        )
        assert run["state"] == "succeeded", (run.get("error"), run.get("attempt"), board.console_text()[-4000:])
        runs.append(run)

    history = board.pin_history()
    moves = high_periods(history, DOWN_PIN)
    assert len(moves) == COMMANDS, f"{len(moves)} moves for {COMMANDS} commands: {moves}"
    assert all(end - start < MOVE_S + 0.1 for start, end in moves), moves
    assert high_periods(history, UP_PIN) == [] and never_both_high(history, UP_PIN, DOWN_PIN)

    def lossy_stats():  # the board saw the loss: the master's retransmissions, or its own
        r = master.request("GET", "/api/devices/lossy-1/stats")
        stats = r.json() if r.status_code == 200 else {}
        return stats if stats.get("duplicates", 0) + stats.get("retransmits", 0) > 0 else None

    stats = wait_until(
        lossy_stats,
        timeout=120,
        interval=1,
        what="the board's stats",
        explain=lambda: board.console_text()[-4000:] + master.log_tail(),
    )
    print(f"attempts per run: {[r['attempt'] for r in runs]}; board: {stats}")
