"""Helpers of the login tests: browser-like clients (cookie jar, CSRF header) against a real master."""

from __future__ import annotations

import httpx
import pytest

from tests.support.masters import ADMIN, ADMIN_PASSWORD, MasterProcess


def session(
    master: MasterProcess, name: str = ADMIN, password: str = ADMIN_PASSWORD, *, csrf: bool = True
) -> httpx.Client:
    """A client logged in like the dashboard: the session cookie, and (csrf=True) the X-CSRF-Token header."""
    client = httpx.Client(base_url=master.url, timeout=30)
    r = client.post("/api/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    if csrf:
        client.headers["X-CSRF-Token"] = r.json()["csrf"]
    return client


def anonymous(master: MasterProcess) -> httpx.Client:
    return httpx.Client(base_url=master.url, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fresh_master(master_factory) -> MasterProcess:
    """A master on an empty database, not set up: nobody can log in yet."""
    return master_factory().start(setup=False)
