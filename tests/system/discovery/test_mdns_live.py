"""The agent, in MicroPython, finds the master's python-zeroconf advertisement by its own mDNS query.

Runs in a network namespace of its own (loopback with multicast on, a route for 224.0.0.0/4), so nothing else
on this machine answers or hears it. Needs root for `ip netns`; skipped otherwise, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pifleet.sim.board import micropython_binary

AGENT = Path(__file__).resolve().parents[3] / "micropython"

ADVERTISER = """
import asyncio, sys
from pifleet.discovery.advertise import Advertiser
async def main():
    a = Advertiser("127.0.0.1", int(sys.argv[1]), hostname="testpi")
    await a.start()
    await a._task
    print("advertising", flush=True)
    await asyncio.sleep(30)  # the test terminates it; this bounds its life should the test die first
asyncio.run(main())
"""

FINDER = """
import asyncio
from agent import mdns
print("found", asyncio.run(mdns.find("127.0.0.7", 2000)))
"""


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace (ip netns) with multicast on loopback"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if micropython_binary() is None:
        return "no micropython binary on this machine"
    return None


@pytest.fixture
def netns():
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    name = f"pft-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        for cmd in ("ip link set lo up", "ip link set lo multicast on", "ip route add 224.0.0.0/4 dev lo"):
            subprocess.run(["ip", "netns", "exec", name, *cmd.split()], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_agent_finds_the_masters_advertisement(netns):
    advertiser = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", ADVERTISER, "5999"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert advertiser.stdout.readline().strip() == "advertising"
        started = time.monotonic()
        found = subprocess.run(
            ["ip", "netns", "exec", netns, micropython_binary(), "-c", FINDER],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, MICROPYPATH=f"{AGENT}:.frozen"),
        )
        elapsed = time.monotonic() - started
        assert found.stdout.strip() == "found ('127.0.0.1', 5999)", found.stdout + found.stderr
        assert elapsed < 1.5  # answered at once (unicast), not at the query's timeout
    finally:
        advertiser.terminate()
        advertiser.wait(10)


def test_no_advertisement_gives_none_after_the_timeout(netns):
    found = subprocess.run(
        ["ip", "netns", "exec", netns, micropython_binary(), "-c", FINDER],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, MICROPYPATH=f"{AGENT}:.frozen"),
    )
    assert found.stdout.strip() == "found None", found.stdout + found.stderr
