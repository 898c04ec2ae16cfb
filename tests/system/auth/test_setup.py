"""First start: no default password. The master prints a one-time setup token; whoever has it creates the first
admin, once. Tokens are read from the real log line of a `pifleet serve` process, as a person would."""

from __future__ import annotations

from tests.support.masters import SETUP_LINE
from tests.system.auth.conftest import anonymous

PASSWORD = "a long enough passphrase"


def test_first_start_prints_a_setup_token_that_creates_the_first_admin_once(fresh_master):
    m = fresh_master
    lines = [line for line in m.log_text().splitlines() if "setup token:" in line]
    assert len(lines) == 1 and " INFO " in lines[0], lines
    token = m.setup_token()
    assert len(token) >= 32  # secrets.token_urlsafe(24): 192 bits
    assert SETUP_LINE.search(lines[0]).group(2) == m.url
    client = anonymous(m)

    # nobody can log in yet: the API refuses, the login page sends a browser to the setup page
    assert client.get("/api/devices").status_code == 401
    r = client.get("/login", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/setup"
    assert client.get("/setup").status_code == 200

    r = client.post("/api/setup", json={"token": "x" * len(token), "name": "alice", "password": PASSWORD})
    assert r.status_code == 403 and r.json()["field"] == "token"
    r = client.post("/api/setup", json={"token": token, "name": "alice", "password": "short"})
    assert r.status_code == 400 and r.json()["field"] == "password"  # the schema says so (SetupRequest)
    r = client.post("/api/setup", json={"token": token, "name": "bad name!", "password": PASSWORD})
    assert r.status_code == 400 and r.json()["field"] == "name"

    r = client.post("/api/setup", json={"token": token, "name": "alice", "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "alice" and r.json()["role"] == "admin" and r.json()["csrf"]
    assert client.get("/api/me").json()["name"] == "alice"  # setup logs the admin in

    # it works once
    again = anonymous(m).post("/api/setup", json={"token": token, "name": "mallory", "password": PASSWORD})
    assert again.status_code == 409, again.text
    assert anonymous(m).get("/setup").headers["location"] == "/login"
    assert anonymous(m).post("/api/login", json={"name": "alice", "password": PASSWORD}).status_code == 200

    # a restart with an admin prints no token
    m.stop()
    m.start(setup=False)
    assert "setup token:" not in m.log_text()[m._log_offset :]


def test_each_start_without_a_user_prints_a_new_token_and_the_old_one_dies(fresh_master):
    m = fresh_master
    first = m.setup_token()
    m.stop()
    m.start(setup=False)
    second = m.setup_token()
    assert second != first
    client = anonymous(m)
    r = client.post("/api/setup", json={"token": first, "name": "alice", "password": PASSWORD})
    assert r.status_code == 403

    # the HTML form: wrong token shows the form again; the right one logs in and opens the dashboard
    form = {"token": "nope", "name": "alice", "password": PASSWORD, "password2": PASSWORD}
    r = client.post("/setup", data=form)
    assert r.status_code == 403 and "wrong setup token" in r.text
    r = client.post("/setup", data=form | {"token": second})
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text and "alice" in page.text
