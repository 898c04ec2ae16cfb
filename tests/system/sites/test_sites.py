"""Several sites, one database: two `pifleet serve --site NAME` on one PostgreSQL, a virtual blind flashed through
each. Any site's API shows the whole fleet and commands any board (the other site's master makes the exchange);
every run fires once, on the site that owns its board; a site killed with SIGKILL shows its boards as
`site unreachable` while the other goes on, and catches up by its runs' misfire policies when it is back.

One pair of masters for the module (each test leaves the blinds idle); the kill comes last. The masters get their
site from PIFLEET_SITE, the environment variable of `--site` (tests/support/masters.py builds the command line).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner

from tests.support.masters import MasterProcess
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.auth.test_login import _Stream
from tests.system.e2e.helpers import DOWN_PIN, iso_in

FINAL = ("succeeded", "failed", "timed_out", "skipped", "missed", "cancelled")
# the first test carries the module's set-up (two masters started, two boards flashed): long on a busy machine
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sites(tmp_path_factory, pg_url):
    """Masters `a` and `b` on one database, blind-a flashed through a, blind-b through b."""
    from pifleet.sim.board import VirtualBoard
    from pifleet.storage.postgres import with_database
    from tests.support.boards import flash

    url = with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}")
    root = tmp_path_factory.mktemp("sites")
    a = MasterProcess(root / "a", url, environ={"PIFLEET_SITE": "a"})
    b = MasterProcess(root / "b", url, environ={"PIFLEET_SITE": "b"})
    boards = {}

    def bring_up(master: MasterProcess, name: str) -> None:
        board = boards[name] = VirtualBoard(name, root / "boards" / name, erased=True, master=master.coap)
        board.start()
        flash(master, board, name, "blind")

    try:
        a.start()
        b.start()  # set up already: one database, one set of people and tokens
        with ThreadPoolExecutor(2) as pool:  # the two boards are flashed side by side, each through its site
            for done in [pool.submit(bring_up, a, "blind-a"), pool.submit(bring_up, b, "blind-b")]:
                done.result()
        for name in boards:
            wait_until(
                lambda name=name: (d := a.device(name)) and d["online"] and d["capabilities"],
                what=f"{name} online",
                explain=lambda: a.log_tail() + "\n" + b.log_tail(),
            )
        yield a, b, boards
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda board: board.stop(), list(boards.values())))
            list(pool.map(lambda master: master.stop(), (a, b)))
        for master in (a, b):
            master.assert_no_errors()


def pulses(board, since: float) -> list[tuple[float, float]]:
    return high_periods(board.pin_history(), DOWN_PIN, since)


def explain(*masters):
    return lambda: "\n".join(m.log_tail(60) for m in masters)


def move(seconds: float) -> dict:
    return {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": seconds}}


def test_site_is_a_plain_name():
    from pifleet.cli import main

    refused = CliRunner().invoke(main, ["serve", "--site", "Green House"])
    assert refused.exit_code == 2 and "--site" in refused.output, refused.output


def test_any_site_shows_the_whole_fleet_and_moves_the_other_sites_blind(sites):
    a, b, boards = sites
    for master in (a, b):
        fleet = {d["name"]: d for d in master.get("/api/devices")}
        assert fleet["blind-a"]["online"] and fleet["blind-b"]["online"], fleet
    for via, name, other in ((a, "blind-b", "blind-a"), (b, "blind-a", "blind-b")):
        since = time.time()
        r = via.post(f"/api/devices/{name}/commands", move(0.5))
        assert r.status_code == 200, r.text
        execution = r.json()
        assert execution["state"] == "succeeded" and execution["device"] == name, execution
        assert execution["result"]["stopped"] == "elapsed"
        down = pulses(boards[name], since)
        assert len(down) == 1 and abs((down[0][1] - down[0][0]) - 0.5) <= 0.1, down
        assert pulses(boards[other], since) == [], f"{other} moved too"
        # the owner's master made the exchange: the command's row is the same on both sites
        assert a.get(f"/api/executions/{execution['id']}")["state"] == "succeeded"


def test_the_api_and_the_dashboard_say_which_site_holds_each_board(sites):
    a, b, _ = sites
    for master in (a, b):
        fleet = {d["name"]: d["site"] for d in master.get("/api/devices")}
        assert (fleet["blind-a"], fleet["blind-b"]) == ("a", "b"), fleet
        assert master.get("/api/devices/blind-b")["site"] == "b"
        listing = master.request("GET", "/ui/devices").text  # the dashboard's board list, a Site column
        assert "<th>Site</th>" in listing and 'data-site="a"' in listing and 'data-site="b"' in listing, listing
        page = master.request("GET", "/devices/blind-a").text
        assert 'data-site="a"' in page, page


def test_a_dashboard_hears_of_what_another_site_did(sites):
    a, b, boards = sites
    with httpx.Client(base_url=b.url, headers=b.headers) as client:
        stream = _Stream(client)  # site b's live event stream, as its dashboard holds it open
        assert stream.until("event: hello")[0] == "status 200"
        r = a.post("/api/devices/blind-a/commands", {"capability": "blind", "command": "position"})
        assert r.status_code == 200, r.text  # made at site a alone, with its own board
        stream.until("event: executions")


def test_every_run_fires_once_on_the_site_that_owns_its_board(sites):
    a, b, boards = sites
    since = time.time()
    jobs = [
        {
            "name": "both-down",
            "target": {"role": "blind"},
            "action": move(0.3),
            "trigger": {"type": "at", "at": iso_in(3)},
        },
        {
            "name": "b-down",
            "target": {"device": "blind-b"},
            "action": move(0.3),
            "trigger": {"type": "at", "at": iso_in(5)},
        },
    ]
    for job in jobs:  # all saved through site a's API
        r = a.post("/api/jobs", job)
        assert r.status_code == 201, r.text

    def finished(name, count):
        runs = a.executions(name)
        return runs if len(runs) == count and all(e["state"] in FINAL for e in runs) else None

    role_runs = wait_until(lambda: finished("both-down", 3), timeout=30, what="the role job", explain=explain(a, b))
    b_runs = wait_until(lambda: finished("b-down", 1), timeout=30, what="b-down", explain=explain(a, b))
    for run in role_runs + b_runs:
        assert run["state"] == "succeeded" and run["attempt"] == 1, run
    by_device = {run["device"]: run for run in role_runs if run["device"]}
    assert set(by_device) == {"blind-a", "blind-b"}
    # each board moved once per run on it: twice for blind-b (the role's run and its own), once for blind-a
    wait_until(lambda: len(pulses(boards["blind-b"], since)) == 2, timeout=5, what="blind-b's two moves")
    assert len(pulses(boards["blind-a"], since)) == 1
    assert len(pulses(boards["blind-b"], since)) == 2
    # blind-b's runs ran at site b, blind-a's at site a (each master logs the runs it made)
    for site, other, run in ((a, b, by_device["blind-a"]), (b, a, by_device["blind-b"]), (b, a, b_runs[0])):
        assert f"execution {run['id']} (" in site.log_text(), f"{run['device']}'s run not made by its site"
        assert f"execution {run['id']} (" not in other.log_text()


def test_a_killed_site_is_unreachable_and_catches_up_when_back(sites):
    a, b, boards = sites
    b.kill()  # like pulling the plug
    since = time.time()
    late = {"policy": "run_late", "grace_s": 120}
    jobs = [
        {
            "name": "a-meanwhile",
            "target": {"device": "blind-a"},
            "action": move(0.3),
            "trigger": {"type": "at", "at": iso_in(2)},
        },
        {
            "name": "b-late",
            "target": {"device": "blind-b"},
            "action": move(0.3),
            "trigger": {"type": "at", "at": iso_in(2)},
            "misfire": late,
        },
        {
            "name": "b-skip",
            "target": {"device": "blind-b"},
            "action": move(0.3),
            "trigger": {"type": "at", "at": iso_in(2)},
            "misfire": {"policy": "skip"},
        },
    ]
    for job in jobs:
        r = a.post("/api/jobs", job)
        assert r.status_code == 201, r.text

    # site a goes on: its own run on time
    run = wait_until(
        lambda: (runs := a.executions("a-meanwhile")) and runs[0]["state"] in FINAL and runs[0],
        timeout=15,
        what="a-meanwhile",
        explain=explain(a),
    )
    assert run["state"] == "succeeded", run
    # site b's board: site unreachable, and a command to it is refused at once
    blind_b = wait_until(
        lambda: (d := a.device("blind-b")) and d["unreachable"] == "site unreachable" and d,
        timeout=20,
        what="blind-b shown as site unreachable",
        explain=explain(a),
    )
    assert not blind_b["online"] and a.device("blind-a")["online"]
    listed = subprocess.run(
        [sys.executable, "-m", "pifleet", "devices"], capture_output=True, text=True, env=a.env(), timeout=60
    )
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert "site unreachable" in rows["blind-b"] and " online " in rows["blind-a"], listed.stdout + listed.stderr
    r = a.post("/api/devices/blind-b/commands", move(0.3))
    assert r.status_code == 502 and "site unreachable" in r.json()["detail"], r.text
    assert [e["state"] for e in a.executions("b-late")] == ["scheduled"]
    assert pulses(boards["blind-b"], since) == []

    b.start()  # back: its runs follow their misfire policies
    runs = {}
    for name in ("b-late", "b-skip"):
        runs[name] = wait_until(
            lambda name=name: (rs := a.executions(name)) and rs[0]["state"] in FINAL and rs[0],
            timeout=30,
            what=name,
            explain=explain(a, b),
        )
    assert runs["b-late"]["state"] == "succeeded" and runs["b-late"]["attempt"] == 1, runs
    assert runs["b-skip"]["state"] == "missed" and "misfire policy skip" in runs["b-skip"]["error"], runs
    assert len(pulses(boards["blind-b"], since)) == 1
    wait_until(lambda: a.device("blind-b")["online"], timeout=15, what="blind-b online again", explain=explain(a, b))
