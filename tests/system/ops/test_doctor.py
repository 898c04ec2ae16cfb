"""`pifleet doctor` beside a running master, on its data directory and database, as its keeper runs it."""

from __future__ import annotations

import socket

from tests.support.masters import free_port
from tests.system.ops.test_backup import pifleet


def lines(out: str) -> dict[str, str]:
    """Each check's line by its name: {"database": "OK    database: connected …"}."""
    found = {}
    for line in out.splitlines():
        if line[:4].strip() in ("OK", "WARN", "FAIL"):
            found[line[6:].split(":", 1)[0]] = line
    return found


def test_doctor_finds_a_running_master_healthy_and_names_what_to_fix(master):
    done = pifleet(
        "doctor", "--data-dir", str(master.data_dir), "--coap-port", str(master.coap_port),
        database_url=master.database_url,
    )  # fmt: skip
    found = lines(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert found["database"].startswith("OK") and "migrations current" in found["database"]
    coap = next(v for k, v in found.items() if k.startswith("CoAP port"))
    assert coap.startswith("OK") and "in use by a running pifleet master" in coap
    assert found["disk"].startswith("OK")
    # no image in this master's catalog yet: it says so and how to add one
    assert found["base images"].startswith("WARN") and "ESP32" in found["base images"]
    assert "pifleet firmware" in done.stdout
    assert {"mDNS", "serial ports", "clock"} <= found.keys()
    assert "FAIL" not in done.stdout


def test_doctor_fails_when_another_program_holds_the_coap_port(master):
    port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))  # binds, never answers
        done = pifleet(
            "doctor", "--data-dir", str(master.data_dir), "--coap-port", str(port),
            database_url=master.database_url,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    coap = next(line for line in done.stdout.splitlines() if "CoAP port" in line)
    assert coap.startswith("FAIL") and "in use by another program" in coap
    assert "--coap-port" in done.stdout  # the fix names what to change
