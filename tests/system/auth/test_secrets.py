"""Secrets stay secret: passwords, session ids, API tokens, the setup token's hash and the WiFi PSK never show up in
the master's log or in API answers — except an API token in the answer that creates it and the setup token in its
one console line. And only the service's database role can read the credential tables."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid

import asyncpg

from tests.support.masters import ADMIN, ADMIN_PASSWORD
from tests.system.auth.conftest import anonymous, bearer, session


def _forms(secret: str) -> list[str]:
    """The secret and the ways its hash could leak (hex, base64)."""
    digest = hashlib.sha256(secret.encode()).digest()
    return [
        secret,
        digest.hex(),
        base64.b64encode(digest).decode().rstrip("="),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
    ]


def test_no_secret_in_the_log_or_in_api_answers(master_factory):
    psk = f"psk-{uuid.uuid4().hex}"
    m = master_factory(environ={"PIFLEET_WIFI_SSID": "home", "PIFLEET_WIFI_PSK": psk}).start(setup=False)
    setup_token = m.setup_token()
    client = anonymous(m)
    answers = []
    r = client.post("/api/setup", json={"token": setup_token, "name": ADMIN, "password": ADMIN_PASSWORD})
    answers.append(r.text)
    client.headers["X-CSRF-Token"] = r.json()["csrf"]
    first_session = client.cookies["pifleet_session"]
    viewer_password = f"viewer-{uuid.uuid4().hex}"
    answers.append(client.post("/api/users", json={"name": "vic", "password": viewer_password}).text)
    created = client.post("/api/tokens", json={"name": "ci", "scope": "write"})
    token = created.json()["secret"]
    wrong = f"wrong-{uuid.uuid4().hex}"
    answers.append(anonymous(m).post("/api/login", json={"name": ADMIN, "password": wrong}).text)
    answers.append(anonymous(m).post("/api/login", json={"name": wrong, "password": wrong}).text)
    viewer = session(m, "vic", viewer_password)
    viewer_session = viewer.cookies["pifleet_session"]
    answers.append(anonymous(m).get("/api/devices", headers=bearer(token)).text)
    for path in (
        "/api/me",
        "/api/users",
        "/api/tokens",
        "/",
        "/ui/auth",
        "/api/devices",
        "/api/boards",
        "/api/firmware",
        "/schema/openapi.json",
        "/api/metrics",
    ):
        answers.append(client.get(path).text)
        answers.append(anonymous(m).get(path, headers=bearer(token)).text)
    answers.append(viewer.get("/").text)
    answers.append(client.post("/ui/auth/users", data={"name": "x", "password": "short"}).text)
    viewer.post("/api/logout").raise_for_status()
    m.stop()
    log = m.log_text()

    secrets = [ADMIN_PASSWORD, viewer_password, wrong, first_session, viewer_session, psk]
    for secret in secrets + [token]:
        for form in _forms(secret):
            assert form not in log, f"a secret ({secret[:6]}…) in the master's log"
            assert not any(form in answer for answer in answers), f"a secret ({secret[:6]}…) in an API answer"
    for form in _forms(setup_token)[1:]:  # its hash nowhere
        assert form not in log and not any(form in answer for answer in answers)
    assert log.count(setup_token) == 1 and f"setup token: {setup_token} (open" in log  # the console line, once
    assert not any(setup_token in answer for answer in answers)
    assert created.text.count(token) == 1  # shown in its creation answer, and there only


async def _privileges(url: str, role: str) -> list[bool]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'create role "{role}" nologin')
        try:
            return [
                await conn.fetchval("select has_table_privilege($1, $2, $3)", role, table, privilege)
                for table in ("users", "sessions", "api_tokens")
                for privilege in ("select", "update")
            ]
        finally:
            await conn.execute(f'drop role "{role}"')
    finally:
        await conn.close()


def test_only_the_service_role_reads_the_credential_tables(module_master):
    role = f"t_other_{uuid.uuid4().hex[:8]}"
    assert asyncio.run(_privileges(module_master.database_url, role)) == [False] * 6
