"""The master's settings (GET/PUT /api/settings, `pifleet settings`): the house's location makes sun triggers
possible and re-plans them when it moves; the time zone is a checked IANA name; only writers change them."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.system.auth.conftest import session

SUNSET_JOB = {
    "name": "down-at-sunset",
    "target": {"group": "porch"},
    "trigger": {"type": "sun", "event": "sunset"},
    "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 20}},
}


def cli(master, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pifleet", *args], capture_output=True, text=True, env=master.env(), timeout=120
    )


def test_location_and_time_zone_are_settings(module_master):
    m = module_master
    before = m.get("/api/settings")
    assert before["latitude"] is None and before["longitude"] is None and before["timezone"]
    assert before["updated_at"] is None

    # without a location a sun trigger is refused, saying how to set it
    assert m.put("/api/groups/porch", {"devices": []}).status_code == 200
    r = m.post("/api/jobs", SUNSET_JOB)
    assert r.status_code == 422 and r.json()["field"] == "trigger.event"
    assert "pifleet settings set latitude" in r.json()["detail"]

    done = cli(m, "settings", "set", "latitude", "52.52")
    assert done.returncode == 0, done.stderr
    assert "latitude   52.52" in done.stdout
    r = m.put("/api/settings", {"longitude": 13.405, "timezone": "Europe/Berlin"})
    assert r.status_code == 200, r.text
    assert r.json() | {"updated_at": None} == {
        "latitude": 52.52,
        "longitude": 13.405,
        "timezone": "Europe/Berlin",
        "updated_at": None,
        "updated_by": "tests",
    }
    r = m.post("/api/jobs", SUNSET_JOB)
    assert r.status_code == 201, r.text
    berlin_sunset = r.json()["next_run"]
    assert berlin_sunset is not None
    # the CLI shows times in the master's zone (the API keeps ISO 8601 with offsets)
    listed = cli(m, "jobs", "list")
    when = datetime.fromisoformat(berlin_sunset).astimezone(ZoneInfo("Europe/Berlin"))
    assert when.strftime("%Y-%m-%d %H:%M:%S %Z") in listed.stdout, listed.stdout

    # the house moves west: the sunset run is planned again, later
    r = m.put("/api/settings", {"longitude": -74.0, "latitude": 40.7})
    assert r.status_code == 200, r.text
    new_york_sunset = m.get("/api/jobs/down-at-sunset")["next_run"]
    assert new_york_sunset is not None and new_york_sunset != berlin_sunset
    upcoming = [e for e in m.get("/api/executions/upcoming") if e["job"] == "down-at-sunset"]
    assert [e["scheduled_for"] for e in upcoming] == [new_york_sunset]

    shown = cli(m, "settings", "show")
    assert shown.returncode == 0 and "timezone   Europe/Berlin" in shown.stdout and "-74" in shown.stdout, shown.stdout


def test_bad_settings_are_refused_naming_the_key(module_master):
    m = module_master
    for body, status, field in [
        ({"latitude": 91}, 400, "latitude"),
        ({"longitude": "east"}, 400, "longitude"),
        ({"timezone": "Mars/Olympus"}, 422, "timezone"),
        ({"timezone": "Europe"}, 422, "timezone"),
        ({}, 422, "body"),
    ]:
        r = m.put("/api/settings", body)
        assert r.status_code == status and r.json().get("field") == field, (body, r.text)
    r = m.put("/api/settings", {"altitude": 30})
    assert r.status_code == 400 and "altitude" in r.json()["detail"]
    bad = cli(m, "settings", "set", "latitude", "north")
    assert bad.returncode == 2 and "not a number" in bad.stderr
    bad = cli(m, "settings", "set", "timezone", "Mars/Olympus")
    assert bad.returncode == 1 and "timezone" in bad.stderr


def test_a_viewer_reads_settings_but_cannot_change_them(module_master):
    admin = session(module_master)
    r = admin.post("/api/users", json={"name": "val", "password": "val's long password", "role": "viewer"})
    assert r.status_code == 201, r.text
    viewer = session(module_master, "val", "val's long password")
    assert viewer.get("/api/settings").status_code == 200
    assert viewer.put("/api/settings", json={"latitude": 1}).status_code == 403
    r = admin.put("/api/settings", json={"timezone": "UTC"})
    assert r.status_code == 200 and r.json()["updated_by"] == "admin"
    # null brings a key back to its default
    r = admin.put("/api/settings", json={"latitude": None})
    assert r.status_code == 200 and r.json()["latitude"] is None


def test_the_settings_page_shows_and_changes_them(module_master):
    admin = session(module_master)
    csrf = admin.headers["X-CSRF-Token"]
    page = admin.get("/settings")
    assert page.status_code == 200 and 'id="settings-form"' in page.text
    assert 'href="/settings" aria-current="page"' in page.text  # in the header menu
    r = admin.post(
        "/settings", data={"_csrf": csrf, "latitude": "48,137", "longitude": "11.575", "timezone": "Europe/Berlin"}
    )
    assert r.status_code == 200 and "Saved." in r.text, r.text
    assert 'value="48.137"' in r.text and "in Europe/Berlin" in r.text
    changed = datetime.fromisoformat(module_master.get("/api/settings")["updated_at"]).astimezone(
        ZoneInfo("Europe/Berlin")
    )
    assert f"Last changed {changed:%Y-%m-%d %H:%M:%S %Z} by" in " ".join(r.text.split())  # the page's times: local
    assert module_master.get("/api/settings") | {"updated_at": None} == {
        "latitude": 48.137,
        "longitude": 11.575,
        "timezone": "Europe/Berlin",
        "updated_at": None,
        "updated_by": "admin",
    }
    # a refusal comes back as the form, the message at its field, nothing changed
    r = admin.post(
        "/settings", data={"_csrf": csrf, "latitude": "123", "longitude": "11.575", "timezone": "Europe/Berlin"}
    )
    assert r.status_code == 422 and 'value="123"' in r.text, r.text
    assert 'aria-invalid="true"' in r.text and "90" in r.text
    r = admin.post(
        "/settings", data={"_csrf": csrf, "latitude": "48.137", "longitude": "11.575", "timezone": "Atlantis/Capital"}
    )
    assert r.status_code == 422 and "Atlantis/Capital" in r.text
    assert module_master.get("/api/settings")["timezone"] == "Europe/Berlin"
    # without the CSRF field the form is refused
    assert session(module_master, csrf=False).post("/settings", data={"latitude": "1"}).status_code == 403

    # a viewer sees the values, no form; posting is refused
    r = admin.post("/api/users", json={"name": "wes", "password": "wes's long password", "role": "viewer"})
    assert r.status_code == 201, r.text
    viewer = session(module_master, "wes", "wes's long password")
    page = viewer.get("/settings")
    assert page.status_code == 200 and "settings-form" not in page.text and ">48.137<" in page.text
    assert viewer.post("/settings", data={"_csrf": viewer.headers["X-CSRF-Token"], "latitude": "1"}).status_code == 403
