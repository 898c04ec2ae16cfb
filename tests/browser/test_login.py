"""Login in a real browser: the form, the page's CSRF token going out with htmx requests (the admin panel creates
an API token, shown once), and logging out."""

from __future__ import annotations

import re

import httpx

from pifleet.web.api.live import RECHECK_S
from tests.browser.conftest import log_in
from tests.support.masters import ADMIN


def test_log_in_create_a_token_in_the_admin_panel_and_log_out(master, page):
    page.goto(master.url + "/ui/devices")
    page.wait_for_url("**/login?next=/ui/devices")
    log_in(page, master)
    assert ADMIN in page.locator("#whoami").inner_text()
    page.click("header nav >> text=People & tokens")  # the admins' page of people and API tokens
    page.wait_for_url("**/people")
    page.wait_for_selector('#auth [data-user="admin"]')

    # an htmx POST: it carries X-CSRF-Token from <body hx-headers>, or the master would refuse it (403)
    page.fill('#token-create input[name="name"]', "from-the-browser")
    page.select_option('#token-create select[name="scope"]', "read")
    page.click('#token-create button[type="submit"]')
    secret = page.locator("#auth [data-secret]").inner_text(timeout=10_000)
    assert re.fullmatch(r"pft_[A-Za-z0-9_-]{43}", secret)
    assert master.get("/api/me", headers={"Authorization": f"Bearer {secret}"})["name"] == "from-the-browser"
    page.reload()
    page.wait_for_selector("#auth [data-token]")
    assert secret not in page.content()  # shown once

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(master.url + "/")
    page.wait_for_url("**/login?next=/")
    assert page.console_errors == [], page.console_errors


def test_a_session_ended_elsewhere_sends_the_open_dashboard_to_the_login_page(master, page):
    log_in(page, master)
    page.wait_for_selector("#devices table, #devices p")  # the dashboard is up, its event stream open
    # the panels' own refreshes (every 10 s, or on a USB change) would get there too: held back here, so only the
    # stream's last event (its hidden /api/me request answers 401 with HX-Redirect) can send the page away
    page.route("**/ui/**", lambda route: route.abort())
    cookie = next(c for c in page.context.cookies() if c["name"] == "pifleet_session")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    elsewhere = httpx.post(
        master.url + "/api/logout", cookies={"pifleet_session": cookie["value"]}, headers={"X-CSRF-Token": csrf}
    )
    assert elsewhere.status_code == 204, elsewhere.text
    page.wait_for_url("**/login*", timeout=(RECHECK_S + 10) * 1000)
