"""Logging in and out: the session cookie, its flags, a new id at every login, wrong passwords, rate limits, and
what an anonymous client gets — a 401 problem from the API, the login page in a browser."""

from __future__ import annotations

import queue
import threading
import time

import httpx
import pytest

from pifleet.web.api.live import RECHECK_S
from tests.support.masters import ADMIN, ADMIN_PASSWORD, REPO
from tests.system.auth.conftest import anonymous, bearer, session


def _cookie_header(response: httpx.Response) -> str:
    return next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "pifleet_session=" in v)


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(module_master):
    client = anonymous(module_master)
    r = client.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json() | {"csrf": "-"} == {
        "name": ADMIN,
        "role": "admin",
        "via": "session",
        "scope": None,
        "csrf": "-",
        "token_id": None,
    }
    cookie = _cookie_header(r).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http on loopback: a Secure cookie would never come back
    session_id = client.cookies["pifleet_session"]
    assert len(session_id) >= 43
    me = client.get("/api/me").json()
    assert me["name"] == ADMIN and me["csrf"] == r.json()["csrf"]

    assert client.post("/api/logout", headers={"X-CSRF-Token": me["csrf"]}).status_code == 204
    assert "pifleet_session" not in client.cookies
    replay = anonymous(module_master)
    replay.cookies.set("pifleet_session", session_id)
    assert replay.get("/api/me").status_code == 401  # the session is gone on the server, not just the cookie


def test_behind_an_https_proxy_the_cookie_is_secure(module_master):
    r = anonymous(module_master).post(
        "/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD}, headers={"X-Forwarded-Proto": "https"}
    )
    assert r.status_code == 200 and "secure" in _cookie_header(r).lower()


def test_every_login_gets_a_new_session_id(module_master):
    client = session(module_master)
    before = client.cookies["pifleet_session"]
    client.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD}).raise_for_status()
    after = client.cookies["pifleet_session"]
    assert after != before
    stale = anonymous(module_master)
    stale.cookies.set("pifleet_session", before)
    assert stale.get("/api/me").status_code == 401  # the id brought to the login is dropped (no fixation)
    assert client.get("/api/me").status_code == 200


def test_anonymous_api_calls_get_a_401_problem(module_master):
    client = anonymous(module_master)
    for path in ("/api/devices", "/api/jobs", "/api/events", "/api/me", "/schema/openapi.json", "/api/users"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["status"] == 401 and r.json()["title"] == "Not authenticated"
    r = client.post("/api/jobs", json={})
    assert r.status_code == 401
    r = client.get("/api/devices", headers={"Authorization": "Bearer pft_not-a-real-token-at-all-xxxxxxxx"})
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    assert client.get("/api/health").json() == {"status": "ok"}
    assert client.get("/static/pifleet.css").status_code == 200


def test_the_dashboard_sends_a_browser_to_the_login_page_and_back(module_master):
    client = anonymous(module_master)
    html = {"accept": "text/html,application/xhtml+xml"}
    r = client.get("/", headers=html)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
    r = client.get("/ui/devices", headers={"HX-Request": "true"})  # an htmx panel after the session expired
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/login"
    page = client.get("/login?next=/schema")
    assert page.status_code == 200 and 'action="/login"' in page.text and 'value="/schema"' in page.text

    r = client.post("/login", data={"name": ADMIN, "password": "wrong password!", "next": "/schema"})
    assert r.status_code == 401 and "wrong name or password" in r.text
    r = client.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD, "next": "/schema"})
    assert r.status_code == 303 and r.headers["location"] == "/schema"
    page = client.get("/", headers=html)
    assert page.status_code == 200
    csrf = client.get("/api/me").json()["csrf"]
    assert f'<meta name="csrf-token" content="{csrf}">' in page.text
    assert f'hx-headers=\'{{"X-CSRF-Token": "{csrf}"}}\'' in page.text
    # signed in: the menu's log-out form, and the admin's own page (people and their tokens) in the menu
    assert 'action="/logout"' in page.text and 'href="/people"' in page.text
    assert client.get("/login", headers=html).status_code == 303  # logged in already

    r = client.post("/logout", data={"_csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(module_master, target):
    r = anonymous(module_master).post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD, "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_wrong_passwords_are_rate_limited_per_address_and_name(master):
    client = anonymous(master)
    wrong = {"name": ADMIN, "password": "not the password"}
    unknown = client.post("/api/login", json={"name": "nobody", "password": "not the password"})
    assert unknown.status_code == 401
    r = client.post("/api/login", json=wrong)
    assert r.status_code == 401 and r.json()["detail"] == unknown.json()["detail"]  # no hint which was wrong
    for _ in range(2):
        assert client.post("/api/login", json=wrong).status_code == 401
    assert client.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD}).status_code == 200
    for _ in range(4):  # the success reset the count
        assert client.post("/api/login", json=wrong).status_code == 401
    r = client.post("/api/login", json=wrong)  # the fifth failure
    assert r.status_code == 401
    r = client.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})  # right, but too late
    assert r.status_code == 429, r.text
    assert 0 < int(r.headers["retry-after"]) <= 900
    assert r.json()["title"] == "Too many attempts"
    page = client.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD})
    assert page.status_code == 429 and "too many failed attempts" in page.text
    # API tokens and existing sessions are not affected
    assert master.get("/api/devices") == []
    log = master.log_text()
    refused = [line for line in log.splitlines() if "too many failures" in line]
    assert refused and all(" WARNING " in line and "127.0.0.1" in line for line in refused)
    assert "not the password" not in log and ADMIN_PASSWORD not in log


class _Stream:
    """/api/events read line by line in a thread, so a test can wait for a line with a deadline."""

    def __init__(self, client: httpx.Client, headers: dict[str, str] | None = None) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._client, self._headers = client, headers or {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            with self._client.stream(
                "GET", "/api/events", headers=self._headers, timeout=httpx.Timeout(30, read=60)
            ) as r:
                self.lines.put(f"status {r.status_code}")
                for line in r.iter_lines():
                    self.lines.put(line)
        except httpx.HTTPError as e:  # cut off: the test reads what came before
            self.lines.put(f"error {e!r}")
        finally:
            self.lines.put(None)  # the stream ended

    def until(self, wanted: str, timeout: float = 15) -> list[str]:
        """The lines up to and including `wanted` (None: the end of the stream)."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} on the stream within {timeout} s; it said: {seen}") from None
            seen.append(line)
            if line == wanted:
                return seen
            assert line is not None, f"the stream ended before {wanted!r}: {seen}"


def test_an_open_event_stream_lasts_through_quiet_and_ends_with_its_session(module_master):
    client = session(module_master)
    stream = _Stream(client)
    assert stream.until("event: hello")[0] == "status 200"
    # Quiet for longer than a credential check: the stream is still the same one. The marker that the master has
    # checked it: a witness stream, opened after it on a session that then ends, ends at its own first check,
    # which falls due after this one's.
    witness_client = session(module_master)
    witness = _Stream(witness_client)
    assert witness.until("event: hello")[0] == "status 200"
    witness_client.post("/api/logout").raise_for_status()
    assert "event: session-ended" in witness.until(None, timeout=RECHECK_S + 10)
    time.sleep(0.5)  # this stream's own check (a database read) may still be finishing: nothing marks its end
    relay = (REPO / "capabilities" / "board" / "relay.py").read_text()
    r = client.post("/api/modules", json={"filename": "relay.py", "source": relay})
    assert r.status_code == 201, r.text
    stream.until("event: modules")

    client.post("/api/logout").raise_for_status()  # the same session, ended while its stream is open
    lines = stream.until(None, timeout=RECHECK_S + 10)
    assert "event: session-ended" in lines, lines


def test_revoking_a_token_ends_the_event_streams_it_opened(module_master):
    admin = session(module_master)  # API tokens are administered by a person
    token = admin.post("/api/tokens", json={"name": "watcher", "scope": "read"})
    assert token.status_code == 201, token.text
    stream = _Stream(anonymous(module_master), bearer(token.json()["secret"]))
    assert stream.until("event: hello")[0] == "status 200"
    admin.delete(f"/api/tokens/{token.json()['id']}").raise_for_status()
    lines = stream.until(None, timeout=RECHECK_S + 10)
    assert "event: session-ended" in lines, lines
