"""Commands over a link that loses 30 % of the datagrams each way: a virtual blind in its own network namespace,
tc netem on its veth pair (docs/agent.md, "A board behind a lossy link")."""

from __future__ import annotations

import time

import pytest

from pifleet.model import FINAL_STATES
from pifleet.sim.netns import NetemError
from tests.support.pins import high_periods, never_both_high
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN, UP_PIN
from tests.system.e2e.test_blind_job import online_with_caps

COMMANDS = 6
MOVE_S = 0.2

# The waits are the budgets the retries imply (RFC 7252 §4.8: ACK_TIMEOUT 2 s x 1.0-1.5, doubling, MAX_RETRANSMIT 4),
# each long enough for a second try of what one try can lose:
# - an exchange gives up after MAX_TRANSMIT_WAIT (93 s), having failed with 0.51^5 = 3.5 %: the board's registration
#   gets two (0.12 %), 1 s apart; the master's capability read after it (GET /cap, 30 s: four transmissions, 6.8 %)
#   is tried again 2 s later (devices/registry.py: 0.46 % for both);
MAX_TRANSMIT_WAIT_S = 93
CAP_READ_S = 30
ONLINE_S = 2 * MAX_TRANSMIT_WAIT_S + 1 + 2 * CAP_READ_S + 2
# - a run: its attempts, each its timeout plus the move, and the backoffs between them (3, 6, 12 … s);
ATTEMPTS, BACKOFF_S, TIMEOUT_S = 6, 3, 21  # 21 s: four transmissions, 6.8 % of attempts time out
RUN_S = ATTEMPTS * (TIMEOUT_S + MOVE_S) + sum(BACKOFF_S * 2**i for i in range(ATTEMPTS - 1)) + 2  # 222 s
# - the board's stats through the master (GET /stats, 30 s): three reads (0.03 %).
STATS_S = 3 * CAP_READ_S


@pytest.mark.timeout(ONLINE_S + COMMANDS * RUN_S + STATS_S + 60)  # the sum of the budgets (typically 1-3 minutes)
def test_commands_over_a_30_percent_loss_link_move_the_blind_once_each(lan, master_factory, board_factory):
    link = lan.add()
    try:
        # Where the kernel has no sch_netem, the same loss is applied in user space (sim/impair.py) and said so;
        # without either it is skipped with the reason.
        how = link.impair("loss 30%")
    except NetemError as exc:
        pytest.skip(str(exc))
    print(f"link {link.name}: {how}")
    master = master_factory(coap_host=lan.host_ip, environ={"PIFLEET_MDNS": "0"}).start()
    # lifetime 15 s: a registration update every 5 s, so a board a lost answer marked offline is back soon
    board = board_factory("lossy-1", master, role="blind", lifetime=15, ip=link.ip, netns=link.name)
    started = time.monotonic()
    wait_until(
        lambda: online_with_caps(master, "lossy-1"),
        timeout=ONLINE_S,
        what="lossy-1 online",
        explain=lambda: board.console_text()[-4000:] + master.log_tail(),
    )
    online_s = time.monotonic() - started
    # The retry budget of each command: CoAP's own retransmissions within a 21 s timeout, then up to six attempts of
    # the run (3 s apart, doubling); the board knows each execution id, so a repeated attempt does not move the blind
    # again. A run fails only when all its attempts do: 0.068^6 if each went out.
    job = {
        "name": "lossy",
        "target": {"device": "lossy-1"},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": MOVE_S}},
        "trigger": {"type": "manual"},
        "retry": {"attempts": ATTEMPTS, "backoff_s": BACKOFF_S},
        "timeout_s": TIMEOUT_S,
    }
    assert master.post("/api/jobs", job).status_code == 201, master.log_tail()
    runs, took = [], []
    for i in range(COMMANDS):
        r = master.post("/api/jobs/lossy/run")
        assert r.status_code == 202, r.text
        run_id, sent = r.json()["id"], time.monotonic()
        run = wait_until(
            lambda: (e := master.get(f"/api/executions/{run_id}"))["state"] in FINAL_STATES and e,
            timeout=RUN_S,
            what=f"run {i + 1} of {COMMANDS} to finish",
            explain=master.log_tail,
        )
        assert run["state"] == "succeeded", (
            f"run {i + 1}: {run['state']} at attempt {run.get('attempt')}: {run.get('error')}\n"
            + board.console_text()[-4000:]
            + master.log_tail()
        )
        runs.append(run)
        took.append(round(time.monotonic() - sent, 1))

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
        timeout=STATS_S,
        interval=1,
        what="the board's stats",
        explain=lambda: board.console_text()[-4000:] + master.log_tail(),
    )
    print(f"online after {online_s:.1f} s; attempts per run: {[r['attempt'] for r in runs]}; s per run: {took}")
    print(f"board: {stats}")
