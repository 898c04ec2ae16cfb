"""Versions a keeper sees: `pifleet --version` names the package and the board agent it flashes, and a master
refuses to start on a database a newer pifleet migrated, saying which versions, instead of running on it."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pifleet import resources
from pifleet.storage import migrations, postgres
from tests.support.masters import free_port

PIFLEET = str(Path(sys.executable).parent / "pifleet")


def test_version_names_the_package_and_the_agent():
    spec = importlib.util.spec_from_file_location("agent_init", resources.agent() / "agent" / "__init__.py")
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)  # the board's own declaration, as a board reports it when it registers
    done = subprocess.run([PIFLEET, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pifleet {metadata.version('pifleet')}, agent {agent.VERSION}"


async def test_a_master_refuses_a_database_a_newer_pifleet_migrated(database_url, tmp_path):
    pool = await postgres.create_pool(database_url)
    try:
        await migrations.migrate(pool)
        known = max(version for version, _, _ in migrations.available())
        await pool.execute(
            "insert into schema_migrations (version, name, pifleet_version) values ($1, 'later', '9.1.0')", known + 1
        )
    finally:
        await pool.close()
    command = [PIFLEET, "serve", "--port", str(free_port()), "--coap-port", str(free_port(socket.SOCK_DGRAM))]
    command += ["--data-dir", str(tmp_path / "data"), "--no-mdns"]
    env = dict(os.environ, DATABASE_URL=database_url)
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert (
        f"Error: this database was migrated by pifleet 9.1.0 (schema {known + 1:04d}); "
        f"this is pifleet {metadata.version('pifleet')}, which knows schema {known:04d} at most" in done.stderr
    ), done.stderr
