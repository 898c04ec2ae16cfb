"""A process target: `pifleet process start` runs the board agent under CPython on this host; it registers with
a real master like a board, and database and Python jobs run on it through the REST API."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.masters import REPO, MasterProcess
from tests.support.waits import wait_until

NAME = "host-1"

WEATHER = textwrap.dedent('''
    """A module the process may call."""
    import asyncio
    import datetime
    import decimal
    from os import getcwd  # imported, not defined here: python.call refuses it


    async def feels_like(celsius, wind_kmh=0.0):
        await asyncio.sleep(0)
        return {"celsius": round(celsius - 0.7 * wind_kmh ** 0.5, 1), "above_28": celsius > 28}


    def summary(day):
        return {"day": datetime.date.fromisoformat(day), "rain_mm": decimal.Decimal("1.25"), "tags": ("a", "b")}


    def broken():
        return 1 / 0


    def alert(celsius, place):
        return f"{place}: {celsius} °C, lower the blinds"


    def huge():
        return "x" * 10_000


    def _private():
        return "never"
''')


class ProcessCli:
    """`pifleet process start NAME …` as a real process, like a user runs it."""

    def __init__(self, workdir: Path, master: MasterProcess, modules: Path, name: str = NAME) -> None:
        self.out = workdir / "process.out"
        argv = [
            sys.executable,
            "-m",
            "pifleet",
            "process",
            "start",
            name,
            "--caps",
            "db,python",
            "--master",
            "%s:%d" % master.coap,
            "--data-dir",
            str(workdir / "processes"),
            "--database",
            f"master={master.database_url}",
            "--modules",
            str(modules),
            "--lifetime",
            "30",
        ]
        with open(self.out, "w") as out:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            env.pop("DATABASE_URL", None)  # the master database comes from --database only
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def text(self) -> str:
        return self.out.read_text()

    def adopt(self, master: MasterProcess, name: str = NAME) -> None:
        """Pair it as a person would: the code its console prints, confirmed at the master (docs/agent.md)."""
        code = wait_until(
            lambda: re.search(r"adopt: code ([0-9A-Z]{4}-[0-9A-Z]{4})", self.text()),
            timeout=20,
            what=f"the adoption code of {name} (output: {self.out})",
            explain=self.text,
        ).group(1)
        waiting = wait_until(
            lambda: master.get("/api/adoptions", params={"pending": "true"}),
            timeout=10,
            what="the process waiting for adoption",
            explain=master.log_tail,
        )
        r = master.post(
            f"/api/adoptions/{waiting[0]['id']}/confirm", json={"code": code, "name": name, "role": "process"}
        )
        assert r.status_code == 200, r.text

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture(scope="module")
def modules_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("host")
    (root / "modules").mkdir()
    (root / "modules" / "weather.py").write_text(WEATHER)
    (root / "outside.py").write_text("def run():\n    return 'should never run'\n")  # not in the modules dir
    return root / "modules"


@pytest.fixture(scope="module")
def process(module_master, modules_dir) -> Iterator[ProcessCli]:
    cli = ProcessCli(modules_dir.parent, module_master, modules_dir)
    try:
        cli.adopt(module_master)
        wait_until(
            lambda: online(module_master),
            timeout=20,
            what=f"{NAME} online (output: {cli.out})",
            explain=module_master.log_tail,
        )
        yield cli
    finally:
        code = cli.stop()
    assert code == 0, cli.text()
    assert "agent: stopped" in cli.text()
    # it deregistered on its way out
    assert not module_master.device(NAME)["online"]


def online(master: MasterProcess) -> dict | None:
    device = master.device(NAME)
    return device if device and device["online"] and device["capabilities"] else None


def run_job(
    master: MasterProcess,
    name: str,
    capability: str,
    command: str,
    params: dict,
    *,
    target: dict | None = None,
    **extra,
) -> dict:
    """Save a manual job for the process target, run it now, return its (first) finished execution."""
    job = {
        "name": name,
        "target": target or {"device": NAME},
        "trigger": {"type": "manual"},
        "action": {"capability": capability, "command": command, "params": params},
        **extra,
    }
    response = master.post("/api/jobs", job)
    assert response.status_code == 201, response.text
    assert master.post(f"/api/jobs/{name}/run").status_code == 202
    return wait_until(
        lambda: next(
            (
                e
                for e in master.executions(name)
                if e["parent_id"] is None and e["state"] in ("succeeded", "failed", "timed_out")
            ),
            None,
        ),
        timeout=15,
        what=f"execution of {name}",
        explain=master.log_tail,
    )


async def fetch(url: str, sql: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def test_registers_like_a_board_with_host_capabilities(module_master, process):
    first_line = process.text().splitlines()[0]
    assert re.fullmatch(rf"process: {NAME} ip=127\.0\.0\.\d+ port=5683", first_line), first_line
    device = online(module_master)
    assert device["id"].startswith("esp-") and device["kind"] == "pifleet.process" and device["role"] == "process"
    assert "adopt: adopted as" in process.text()  # paired by adoption, like a board flashed elsewhere
    assert device["firmware"].startswith("cpython-")
    caps = {c["name"]: c for c in device["capabilities"]}
    assert set(caps) == {"db", "python"}
    assert caps["db"]["commands"]["query"]["args"] == {"type": "list", "required": False}
    assert caps["python"]["commands"]["call"]["kwargs"] == {"type": "object", "required": False}
    workdir = process.out.parent / "processes" / NAME
    # config.json holds the DSNs: private to its user; a process has no boot.py (no outputs)
    assert (workdir / "config.json").stat().st_mode & 0o077 == 0
    assert not (workdir / "boot.py").exists()


def test_db_jobs_write_rows_with_parameters_and_read_them_back(module_master, process):
    url = module_master.database_url
    done = run_job(
        module_master,
        "make-table",
        "db",
        "execute",
        {"sql": "create table balcony_log (celsius numeric(5,2), place text, at timestamptz default now())"},
    )
    assert done["state"] == "succeeded", done["error"]
    assert done["result"] == {"rowcount": 0, "status": "CREATE TABLE"}

    evil = "x'); drop table balcony_log; --"
    done = run_job(
        module_master,
        "write-reading",
        "db",
        "execute",
        {
            "sql": "insert into balcony_log (celsius, place, at) values ($1, $2, $3), ($4, $5, $3)",
            "args": [21.5, "balcony", "2025-06-01T12:00:00+00:00", 29.25, evil],
        },
    )
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["rowcount"] == 2

    rows = asyncio.run(fetch(url, "select celsius, place, at from balcony_log order by celsius"))
    assert [(float(r["celsius"]), r["place"]) for r in rows] == [(21.5, "balcony"), (29.25, evil)]
    assert rows[0]["at"].isoformat() == "2025-06-01T12:00:00+00:00"

    done = run_job(
        module_master,
        "read-hot",
        "db",
        "query",
        {"sql": "select celsius, place, at from balcony_log where celsius > $1 order by celsius", "args": [28]},
    )
    assert done["state"] == "succeeded", done["error"]
    assert done["result"] == {
        "rows": [{"celsius": 29.25, "place": evil, "at": "2025-06-01T12:00:00+00:00"}],
        "rowcount": 1,
        "columns": ["celsius", "place", "at"],
    }


def test_a_follow_up_uses_the_rows_of_a_query(module_master, process):
    """The hottest reading, read from a table; above 28 °C a follow-up gets that row as its keyword arguments."""
    assert (
        run_job(
            module_master,
            "heat-table",
            "db",
            "execute",
            {
                "sql": "create table heat_log as select * from "
                "(values (24.0, 'kitchen'), (29.5, 'balcony')) v(celsius, place)",
            },
        )["state"]
        == "succeeded"
    )
    follow_up = {
        "on": "success",
        "trigger": {"type": "delay", "seconds": 0.1},
        "when": {"path": "rows.0.celsius", "above": 28},
        "action": {
            "capability": "python",
            "command": "call",
            "params": {"function": "weather:alert", "kwargs": {"$result": "rows.0"}},
        },
    }
    done = run_job(
        module_master,
        "hottest",
        "db",
        "query",
        {"sql": "select celsius, place from heat_log order by celsius desc limit 1"},
        target={"process": NAME},
        follow_ups=[follow_up],
    )
    assert done["result"]["rows"] == [{"celsius": 29.5, "place": "balcony"}], done["error"]
    alert = wait_until(
        lambda: next(
            (e for e in module_master.executions("hottest") if e["parent_id"] and e["state"] == "succeeded"), None
        ),
        timeout=15,
        what="the follow-up",
        explain=module_master.log_tail,
    )
    assert alert["result"] == {"value": "balcony: 29.5 °C, lower the blinds"}


def test_db_refusals_name_the_problem(module_master, process):
    done = run_job(module_master, "typo", "db", "query", {"sql": "selec 1"})
    assert done["state"] == "failed"
    assert "4.00" in done["error"] and 'syntax error at or near "selec"' in done["error"], done["error"]

    done = run_job(module_master, "elsewhere", "db", "query", {"sql": "select 1", "database": "warehouse"})
    assert done["state"] == "failed"
    assert "no database 'warehouse'" in done["error"] and "configured: master" in done["error"], done["error"]

    done = run_job(module_master, "too-few", "db", "query", {"sql": "select $1::int + $2::int", "args": [1]})
    assert done["state"] == "failed" and "takes 2 argument(s)" in done["error"], done["error"]

    # the master checks the declared schema before it saves anything
    job = {
        "name": "not-a-list",
        "target": {"device": NAME},
        "trigger": {"type": "manual"},
        "action": {"capability": "db", "command": "query", "params": {"sql": "select $1", "args": "1"}},
    }
    response = module_master.post("/api/jobs", job)
    assert response.status_code == 422 and response.json()["field"] == "action.params.args", response.text


def test_query_results_are_capped_to_one_answer_and_marked_truncated(module_master, process):
    done = run_job(module_master, "many", "db", "query", {"sql": "select g from generate_series(1, 1500) g"})
    assert done["state"] == "succeeded", done["error"]
    result = done["result"]
    assert result["truncated"] is True and 100 < result["rowcount"] < 1500
    assert result["rows"] == [{"g": n} for n in range(1, result["rowcount"] + 1)]  # the first rows, in order

    done = run_job(module_master, "few", "db", "query", {"sql": "select g from generate_series(1, 3) g"})
    assert done["result"] == {"rows": [{"g": 1}, {"g": 2}, {"g": 3}], "rowcount": 3, "columns": ["g"]}


def test_python_call_returns_the_functions_result(module_master, process):
    done = run_job(
        module_master,
        "feels",
        "python",
        "call",
        {"function": "weather:feels_like", "kwargs": {"celsius": 30, "wind_kmh": 16}},
        target={"process": NAME},
    )
    assert done["state"] == "succeeded", done["error"]
    assert done["result"] == {"value": {"celsius": 27.2, "above_28": True}}

    done = run_job(
        module_master, "summary", "python", "call", {"function": "weather:summary", "kwargs": {"day": "2025-06-01"}}
    )
    assert done["result"] == {"value": {"day": "2025-06-01", "rain_mm": 1.25, "tags": ["a", "b"]}}

    done = run_job(module_master, "broken", "python", "call", {"function": "weather:broken"})
    assert done["state"] == "failed" and "5.00" in done["error"] and "ZeroDivisionError" in done["error"]

    done = run_job(module_master, "huge", "python", "call", {"function": "weather:huge"})
    assert done["state"] == "failed" and "result too large" in done["error"], done["error"]


@pytest.mark.parametrize(
    "function, message",
    [
        ("os:getcwd", "module 'os' is not allowed on this process (allowed: weather"),
        ("outside:run", "module 'outside' is not allowed"),
        ("weather:getcwd", "'getcwd' is not defined in module 'weather'"),
        ("weather:_private", "function must be 'module:function' (public names)"),
        ("weather", "function must be 'module:function'"),
        ("weather:nothing", "module 'weather' has no function 'nothing'"),
    ],
)
def test_python_call_refuses_what_is_not_allow_listed(module_master, process, function, message):
    name = "refuse-" + re.sub(r"[^a-z]", "-", function.lower())
    done = run_job(module_master, name, "python", "call", {"function": function})
    assert done["state"] == "failed" and "4.00" in done["error"] and message in done["error"], done["error"]


def test_python_call_refuses_kwargs_that_do_not_fit(module_master, process):
    done = run_job(
        module_master, "bad-kwargs", "python", "call", {"function": "weather:feels_like", "kwargs": {"fahrenheit": 80}}
    )
    assert done["state"] == "failed" and "kwargs do not fit weather:feels_like" in done["error"], done["error"]


def test_cli_refuses_bad_options():
    out = subprocess.run(
        [sys.executable, "-m", "pifleet", "process", "start", "x", "--caps", "db,gpio"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "choose from db, python" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "pifleet", "process", "start", "x", "--database", "nodsn"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "expected NAME=DSN" in out.stderr
