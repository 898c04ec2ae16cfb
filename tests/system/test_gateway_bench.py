"""tools/bench/gateway.py, run briefly: the load generator's boards register, send heartbeats and telemetry under
OSCORE to the master's ingest path and to aiocoap's bare echo, and the bench ends with its figures line — every
telemetry answered 2.04 by the master and every reading of it stored in the session's PostgreSQL.

A smoke test of the benchmark (that it runs and measures what it says), not a performance check: the figures of a
CI machine mean nothing here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.masters import REPO

pytestmark = pytest.mark.timeout(120)


def test_the_gateway_bench_stores_every_reading_and_prints_its_line(pg_url):
    bench = REPO / "tools" / "bench" / "gateway.py"
    args = ["--boards", "4", "--messages", "30", "--rounds", "1", "--registrations", "1", "--values", "3"]
    done = subprocess.run(
        [sys.executable, str(bench), *args],
        cwd=REPO,
        env=os.environ | {"DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    figures = dict(item.split("=", 1) for item in last.split())
    assert list(figures)[:4] == ["telemetry_per_s", "echo_per_s", "ratio_vs_echo", "p99_ingest_ms"], last
    assert float(figures["telemetry_per_s"]) > 0 and float(figures["echo_per_s"]) > 0, last
    # 4 boards x 30 requests, every 10th a registration update: 108 telemetry of 3 numbers each
    assert (figures["telemetry_sent"], figures["telemetry_ok"], figures["updates_ok"]) == ("108", "108", "12"), last
    assert figures["rows_stored"] == figures["rows_expected"] == "324", last
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
