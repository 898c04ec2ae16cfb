"""The fleet's Wi-Fi as a setting (issue 17, item 1): set through the API, the CLI (the key from a file) and the
settings page; flashing writes it into the board; the key never comes back out."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.masters import ADMIN, ADMIN_PASSWORD

HOME_KEY = "correct-horse-wifi-7731"
ATTIC_KEY = "attic-key-9f2e1c55"


def _login(master):
    import httpx

    client = httpx.Client(base_url=master.url, timeout=30)
    r = client.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"]


def test_wifi_setting_api_cli_page_and_flashing(master, board_factory, tmp_path):
    # nothing set: no networks (the tests' master has no PIFLEET_WIFI_SSID)
    wifi = master.get("/api/wifi")
    assert wifi["networks"] == [] and wifi["source"] == "none" and wifi["fallback_s"] == 300

    r = master.put("/api/wifi", json={"networks": [{"ssid": "home", "psk": "short"}]})
    assert r.status_code == 400 and "psk" in r.json()["field"], r.text  # WPA2: 8..63 characters
    r = master.put("/api/wifi", json={"networks": [{"ssid": "home"}]})
    assert r.status_code == 422 and r.json()["field"] == "networks[0].psk", r.text  # a new network needs its key

    r = master.put("/api/wifi", json={"networks": [{"ssid": "home", "psk": HOME_KEY}], "fallback_s": 120})
    assert r.status_code == 200, r.text
    assert r.json()["networks"] == [{"ssid": "home", "psk_set": True}] and r.json()["fallback_s"] == 120
    assert HOME_KEY not in r.text

    # the CLI: the key from a file, never on the command line; the new network comes first
    key_file = tmp_path / "attic.key"
    key_file.write_text(ATTIC_KEY + "\n")
    cli = [sys.executable, "-m", "pifleet", "wifi"]
    out = subprocess.run([*cli, "set", "attic", "--psk-file", str(key_file)], env=master.env(), capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    shown = subprocess.run([*cli, "show"], env=master.env(), capture_output=True, text=True)
    assert shown.returncode == 0 and "attic" in shown.stdout and "home" in shown.stdout
    assert ATTIC_KEY not in shown.stdout + out.stdout.decode() and HOME_KEY not in shown.stdout
    wifi = master.get("/api/wifi")
    assert [n["ssid"] for n in wifi["networks"]] == ["attic", "home"] and all(n["psk_set"] for n in wifi["networks"])

    # the settings page: a section with the networks, a form with an empty key field
    client, csrf = _login(master)
    page = client.get("/settings").text
    assert 'id="wifi-networks"' in page and 'data-ssid="attic"' in page and 'id="wifi-psk"' in page
    assert HOME_KEY not in page and ATTIC_KEY not in page
    r = client.post("/settings/wifi", data={"_csrf": csrf, "action": "add", "ssid": "garage", "psk": "2short"})
    assert r.status_code == 422 and 'id="wifi-error"' in r.text and "2short" not in r.text
    r = client.post("/settings/wifi", data={"_csrf": csrf, "action": "remove", "ssid": "attic"})
    assert r.status_code == 200 and 'data-ssid="attic"' not in r.text and 'data-ssid="home"' in r.text

    # flashing writes the fleet's networks into the board
    board = board_factory("wifi-flash-1", master)
    config = json.loads(board.read_files()["config.json"])
    assert config["wifi"] == {"nets": [["home", HOME_KEY]], "fallback_s": 120}
    # a key reaches the board and the database, nothing else
    assert HOME_KEY not in master.log_text() and ATTIC_KEY not in master.log_text()
    assert HOME_KEY not in master.request("GET", "/api/wifi").text
