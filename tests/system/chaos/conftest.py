"""Fixtures for boards behind a real lossy network (pifleet.sim.netns): a LAN of network namespaces, or a skip that
says why there cannot be one here (no iproute2, no CAP_NET_ADMIN)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def lan() -> Iterator:
    from pifleet.sim import netns

    problem = netns.unavailable()
    if problem:
        pytest.skip(f"boards in network namespaces are not possible here: {problem}")
    with netns.Lan() as lan:
        yield lan
