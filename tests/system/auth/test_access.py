"""Who may do what: CSRF for cookie sessions, the viewer role, read and write API tokens, revocation, and that
the guard covers every route of the app — also routes added later by someone else — except the public few."""

from __future__ import annotations

import re
import warnings

import pytest

from tests.support.masters import ADMIN
from tests.system.auth.conftest import anonymous, bearer, session

VIEWER_PASSWORD = "viewer's own password"


@pytest.fixture(scope="module")
def viewer(module_master) -> str:
    admin = session(module_master)
    r = admin.post("/api/users", json={"name": "vera", "password": VIEWER_PASSWORD, "role": "viewer"})
    assert r.status_code == 201, r.text
    return "vera"


def _token(master, scope: str, name: str = "script") -> dict:
    r = session(master).post("/api/tokens", json={"name": name, "scope": scope})
    assert r.status_code == 201, r.text
    return r.json()


def test_cookie_requests_that_change_something_need_the_csrf_token(module_master):
    client = session(module_master, csrf=False)
    csrf = client.get("/api/me").json()["csrf"]
    r = client.put("/api/groups/porch", json={"devices": []})
    assert r.status_code == 403 and r.json()["field"] == "X-CSRF-Token"
    r = client.put("/api/groups/porch", json={"devices": []}, headers={"X-CSRF-Token": csrf[:-2] + "xx"})
    assert r.status_code == 403
    r = client.put("/api/groups/porch", json={"devices": []}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    # a form carries it as _csrf (the dashboard's panels send the header through hx-headers)
    r = client.post("/ui/roles/assign", data={"role": "nope", "devices": "x"})
    assert r.status_code == 403
    r = client.post("/ui/roles/assign", data={"role": "nope", "devices": "x", "_csrf": csrf})
    assert r.status_code == 200
    assert client.delete("/api/groups/porch", headers={"X-CSRF-Token": csrf}).status_code == 204
    # another session's token is no good
    other = session(module_master).headers["X-CSRF-Token"]
    assert client.put("/api/groups/x", json={"devices": []}, headers={"X-CSRF-Token": other}).status_code == 403


def test_a_cross_site_request_is_refused_before_anything_else(module_master):
    r = anonymous(module_master).post(
        "/api/login", json={"name": ADMIN, "password": "whatever it is"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 403


def test_api_tokens_need_no_csrf_token(module_master):
    r = module_master.put("/api/groups/tokened", json={"devices": []})
    assert r.status_code == 200, r.text
    assert module_master.delete("/api/groups/tokened").status_code == 204


def test_a_viewer_reads_but_cannot_change_anything(module_master, viewer):
    client = session(module_master, viewer, VIEWER_PASSWORD)
    me = client.get("/api/me").json()
    assert me["role"] == "viewer"
    assert client.get("/api/devices").status_code == 200
    assert client.get("/api/jobs").status_code == 200
    r = client.put("/api/groups/porch", json={"devices": []})
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    assert client.post("/api/jobs", json={}).status_code == 403
    assert client.get("/api/users").status_code == 403
    assert client.get("/api/tokens").status_code == 403
    assert client.get("/ui/auth").status_code == 403
    page = client.get("/")
    assert page.status_code == 200 and "Users and API tokens" not in page.text
    assert client.post("/api/logout").status_code == 204  # but it may log out


def test_a_read_token_reads_and_a_write_token_does_all_but_administer(module_master):
    read = _token(module_master, "read")
    client = anonymous(module_master)
    assert client.get("/api/devices", headers=bearer(read["secret"])).status_code == 200
    me = client.get("/api/me", headers=bearer(read["secret"])).json()
    assert me == {"name": "script", "via": "token", "role": None, "scope": "read", "csrf": None, "token_id": read["id"]}
    assert client.put("/api/groups/g", json={"devices": []}, headers=bearer(read["secret"])).status_code == 403
    assert client.get("/api/users", headers=bearer(read["secret"])).status_code == 403

    write = _token(module_master, "write")
    assert client.put("/api/groups/g", json={"devices": []}, headers=bearer(write["secret"])).status_code == 200
    assert client.delete("/api/groups/g", headers=bearer(write["secret"])).status_code == 204
    for method, path, body in [
        ("GET", "/api/users", None),
        ("GET", "/api/tokens", None),
        ("POST", "/api/tokens", {"name": "x", "scope": "write"}),
        ("POST", "/api/users", {"name": "x", "password": "xxxxxxxxxxxx"}),
        ("DELETE", f"/api/tokens/{read['id']}", None),
    ]:
        r = client.request(method, path, json=body, headers=bearer(write["secret"]))
        assert r.status_code == 403, (method, path, r.text)
    # a token with a cookie beside it is still just the token
    admin = session(module_master)
    r = admin.get("/api/users", headers=bearer(read["secret"]))
    assert r.status_code == 403


def test_a_token_is_shown_once_recorded_when_used_and_refused_once_revoked(module_master):
    admin = session(module_master)
    created = _token(module_master, "read", name="shown-once")
    secret = created["secret"]
    assert re.fullmatch(r"pft_[A-Za-z0-9_-]{43}", secret)
    listed = admin.get("/api/tokens")
    assert secret not in listed.text and "secret" not in listed.text
    entry = next(t for t in listed.json() if t["id"] == created["id"])
    assert entry["name"] == "shown-once" and entry["scope"] == "read" and entry["created_by"] == ADMIN
    assert entry["last_used_at"] is None
    assert anonymous(module_master).get("/api/jobs", headers=bearer(secret)).status_code == 200
    entry = next(t for t in admin.get("/api/tokens").json() if t["id"] == created["id"])
    assert entry["last_used_at"] is not None

    assert admin.delete(f"/api/tokens/{created['id']}").status_code == 204
    r = anonymous(module_master).get("/api/jobs", headers=bearer(secret))
    assert r.status_code == 401
    assert admin.delete(f"/api/tokens/{created['id']}").status_code == 404
    assert "unknown or revoked API token from 127.0.0.1" in module_master.log_text()


def test_users_are_administered_by_admins_and_the_last_admin_stays(module_master):
    admin = session(module_master)
    r = admin.post("/api/users", json={"name": "tom", "password": "short", "role": "viewer"})
    assert r.status_code == 400 and r.json()["field"] == "password"  # the schema says so (UserCreate)
    r = admin.post("/api/users", json={"name": "tom", "password": "tom's long password", "role": "boss"})
    assert r.status_code == 400 and r.json()["field"] == "role"
    assert admin.post("/api/users", json={"name": "tom", "password": "tom's long password"}).status_code == 201
    r = admin.post("/api/users", json={"name": "tom", "password": "tom's long password"})
    assert r.status_code == 409 and r.json()["field"] == "name"
    users = admin.get("/api/users").json()
    assert {"name": "tom", "role": "viewer"}.items() <= next(u for u in users if u["name"] == "tom").items()
    assert "password" not in admin.get("/api/users").text
    tom = session(module_master, "tom", "tom's long password")
    assert admin.delete("/api/users/tom").status_code == 204
    assert tom.get("/api/me").status_code == 401  # gone with their sessions
    r = admin.delete(f"/api/users/{ADMIN}")
    assert r.status_code == 409 and r.json()["field"] == "name"
    assert admin.delete("/api/users/nobody").status_code == 404


def test_the_admin_panel_shows_a_new_tokens_secret_once(module_master):
    admin = session(module_master)
    panel = admin.post("/ui/auth/tokens", data={"name": "panel-token", "scope": "read"})
    assert panel.status_code == 200
    secret = re.search(r"<code data-secret>(pft_[^<]+)</code>", panel.text).group(1)
    assert anonymous(module_master).get("/api/me", headers=bearer(secret)).json()["name"] == "panel-token"
    again = admin.get("/ui/auth")
    assert "panel-token" in again.text and secret not in again.text
    r = admin.post("/ui/auth/users", data={"name": "pat", "password": "pat's long password", "role": "viewer"})
    assert r.status_code == 200 and 'data-user="pat"' in r.text


def _all_routes() -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, hidden dashboard routes included."""
    from pifleet.app import create_app

    with warnings.catch_warnings():  # Litestar's notices about 3.0 (the master logs them; not our business here)
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(master=None, auth=object())  # type: ignore[arg-type] — routes only, nothing is called
    return sorted(
        {
            (method, route.path)
            for route in app.routes
            for method in getattr(route, "methods", ())
            if method not in ("OPTIONS", "HEAD")
        }
    )


_SAMPLE = {"int": "1", "uuid": "00000000-0000-0000-0000-000000000001", "str": "x", "path": "x"}


def test_every_route_but_the_public_few_needs_a_login(module_master):
    from pifleet.app import PUBLIC

    client = anonymous(module_master)
    routes = _all_routes()
    assert len(routes) > 60
    checked = 0
    for method, typed in routes:
        template = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", typed)  # as routed: /static/{file_path}
        path = re.sub(r"\{\w+:(\w+)\}", lambda m: _SAMPLE[m.group(1)], typed)
        r = client.request(method, path)
        if template in PUBLIC:
            assert "log in first" not in r.text, (method, template)  # (POST /login may say: wrong password)
            continue
        assert r.status_code == 401, (method, template, r.status_code, r.text[:200])
        checked += 1
    assert checked > 50
    assert PUBLIC <= {re.sub(r"\{(\w+):[^}]+\}", r"{\1}", t) for _, t in routes}  # the allow-list is real
