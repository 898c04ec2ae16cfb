"""The seed's own example, end to end: read a sensor, write the reading to a table, lower the blinds if it is
above 28 °C — a board, a process target and PostgreSQL, joined by one job and its follow-ups."""

from __future__ import annotations

import asyncio

import asyncpg

from pifleet.model import FINAL_STATES
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN
from tests.system.e2e.test_blind_job import online_with_caps
from tests.system.process.test_process_target import ProcessCli


def test_read_store_and_shade(master, board_factory, tmp_path):
    sensor = board_factory("temp-1", master, role="sensor")
    blind = board_factory("blind-1", master, role="blind")
    (tmp_path / "modules").mkdir()
    recorder = ProcessCli(tmp_path, master, tmp_path / "modules", name="recorder")
    try:
        recorder.adopt(master, "recorder")
        wait_until(
            lambda: all(online_with_caps(master, n) for n in ("temp-1", "blind-1", "recorder")),
            timeout=30,
            what="sensor, blind and the recorder process online",
            explain=master.log_tail,
        )
        asyncio.run(execute(master.database_url, "create table readings_log (celsius real, place text)"))
        job = {
            "name": "balcony",
            "target": {"device": "temp-1"},
            "trigger": {"type": "manual"},
            "action": {"capability": "temperature", "command": "read"},
            "follow_ups": [
                {
                    "target": {"process": "recorder"},
                    "trigger": {"type": "delay", "seconds": 0.1},
                    "action": {
                        "capability": "db",
                        "command": "execute",
                        "params": {
                            "sql": "insert into readings_log values ($1, $2)",
                            "args": [{"$result": "celsius"}, "balcony"],
                        },
                    },
                },
                {
                    "target": {"device": "blind-1"},
                    "trigger": {"type": "delay", "seconds": 0.1},
                    "when": {"path": "celsius", "above": 28},
                    "action": {
                        "capability": "blind",
                        "command": "move",
                        "params": {"direction": "down", "seconds": 0.5},
                    },
                },
            ],
        }
        response = master.post("/api/jobs", job)
        assert response.status_code == 201, response.text

        for microvolts in (750_000, 810_000):  # 25 °C, then 31 °C
            sensor.set_input(adc={34: microvolts})
            before = len(master.executions("balcony"))
            master.post("/api/jobs/balcony/run")
            wait_until(
                lambda: len([e for e in master.executions("balcony") if e["state"] in FINAL_STATES]) == before + 3,
                timeout=20,
                what="the reading and both follow-ups",
                explain=master.log_tail,
            )

        rows = asyncio.run(fetch(master.database_url, "select celsius, place from readings_log order by celsius"))
        assert [(r["celsius"], r["place"]) for r in rows] == [(25.0, "balcony"), (31.0, "balcony")]
        ((on, off),) = high_periods(blind.pin_history(), DOWN_PIN)  # lowered once: only when it was hot
        assert abs((off - on) - 0.5) < 0.1
        skipped = [e for e in master.executions("balcony") if e["state"] == "skipped"]
        assert len(skipped) == 1 and "celsius=25.0 is not above 28" in skipped[0]["error"]
    finally:
        recorder.stop()


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fetch(url: str, sql: str):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()
