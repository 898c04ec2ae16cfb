"""What the keeper of a master watches: Prometheus scraping GET /metrics with a read token after a job ran on a
virtual board, and the master's log as one JSON object per line (PIFLEET_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pifleet.model import FINAL_STATES
from tests.support.boards import flash
from tests.support.masters import MasterProcess
from tests.support.waits import wait_until
from tests.system.auth.conftest import anonymous, bearer, session

BOARD = "blind-obs"


@pytest.fixture(scope="module")
def ran(tmp_path_factory, pg_url) -> Iterator[tuple[MasterProcess, dict]]:
    """A master logging JSON, one virtual blind flashed through it, and one run of a job on it that succeeded."""
    from pifleet.sim.board import VirtualBoard
    from pifleet.storage.postgres import with_database

    base = tmp_path_factory.mktemp("observability")
    master = MasterProcess(
        base / "master", with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}"), environ={"PIFLEET_LOG_FORMAT": "json"}
    )
    master.start()  # the setup token is found in the JSON line's message as in a text one
    board = VirtualBoard(BOARD, base / "boards" / BOARD, erased=True, master=master.coap)
    board.start()
    try:
        flash(master, board, BOARD, "blind")
        wait_until(
            lambda: (d := master.device(BOARD)) and d["online"] and d["capabilities"],
            what=f"{BOARD} online",
            explain=master.log_tail,
        )
        job = {
            "name": "close-now",
            "target": {"device": BOARD},
            "trigger": {"type": "manual"},
            "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 0.2}},
        }
        assert master.post("/api/jobs", job).status_code == 201
        assert master.post("/api/jobs/close-now/run").status_code in (200, 201, 202)
        run = wait_until(
            lambda: (e := master.executions("close-now")) and e[0]["state"] in FINAL_STATES and e[0],
            timeout=30,
            what="the run of close-now",
            explain=master.log_tail,
        )
        assert run["state"] == "succeeded", run
        yield master, run
    finally:
        board.stop()
        master.stop()
    master.assert_no_errors()  # JSON lines too


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_scrapes_what_a_user_graphs_with_a_read_token(ran):
    master, _ = ran
    read = session(master).post("/api/tokens", json={"name": "prometheus", "scope": "read"}).json()["secret"]

    r = anonymous(master).get("/metrics", headers=bearer(read))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    seen = samples(r.text)
    assert seen[("pifleet_executions_total", (("state", "succeeded"),))] == 1
    assert seen[("pifleet_executions_total", (("state", "failed"),))] == 0
    move = (("capability", "blind"), ("command", "move"))
    assert seen[("pifleet_command_duration_seconds_count", move)] == 1
    assert 0.2 <= seen[("pifleet_command_duration_seconds_sum", move)] < 10  # the board answers when it stopped
    assert seen[("pifleet_fire_error_seconds_count", ())] == 1
    assert seen[("pifleet_boards", (("state", "online"),))] == 1
    assert seen[("pifleet_board_last_seen_seconds", (("device", BOARD),))] > 0
    assert seen[("pifleet_coap_datagrams_total", (("outcome", "served"),))] > 0  # its registration, at least
    assert seen[("pifleet_flashes_total", (("outcome", "succeeded"),))] == 1
    assert seen[("pifleet_db_pool_size", ())] >= 1 and seen[("pifleet_db_pool_waiters", ())] == 0
    # the JSON counters are the same as the series'
    events = master.get("/api/metrics")
    assert events["registrations"] == seen[("pifleet_coap_events_total", (("event", "registrations"),))] >= 1


def test_metrics_are_not_public(ran):
    master, _ = ran
    r = anonymous(master).get("/metrics")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert anonymous(master).get("/metrics", headers=bearer("pft_not-a-token")).status_code == 401


def test_json_logs_are_one_object_a_line_and_name_the_run(ran):
    master, run = ran
    lines = [line for line in master.log_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line in the master's log: {line!r}") from None
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    assert not [e for e in entries if e["level"] in ("ERROR", "CRITICAL") or "exc" in e], "errors in the log"
    succeeded = [e for e in entries if e.get("execution") == run["id"] and "succeeded" in e["message"]]
    assert succeeded and succeeded[0]["job"] == "close-now" and succeeded[0]["logger"] == "pifleet.jobs.runner"
    device = master.device(BOARD)["id"]
    assert any(e.get("device") == device and "registered" in e["message"] for e in entries)
    assert master.token and master.token not in master.log_text()  # the API token it was set up with
