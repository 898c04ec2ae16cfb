"""Login in a real browser: the form, the page's CSRF token going out with htmx requests (the admin panel creates
an API token, shown once), and logging out."""

from __future__ import annotations

import re

from tests.browser.conftest import log_in
from tests.conftest import ADMIN


def test_log_in_create_a_token_in_the_admin_panel_and_log_out(master, page):
    page.goto(master.url + "/ui/devices")
    page.wait_for_url("**/login?next=/ui/devices")
    log_in(page, master)
    assert ADMIN in page.locator("#whoami").inner_text()
    page.wait_for_selector('#auth [data-user="admin"]')

    # an htmx POST: it carries X-CSRF-Token from <body hx-headers>, or the master would refuse it (403)
    page.fill('#token-create input[name="name"]', "from-the-browser")
    page.select_option('#token-create select[name="scope"]', "read")
    page.click('#token-create button[type="submit"]')
    secret = page.locator("#auth [data-secret]").inner_text(timeout=10_000)
    assert re.fullmatch(r"pft_[A-Za-z0-9_-]{43}", secret)
    assert master.get("/api/me", headers={"Authorization": f"Bearer {secret}"})["name"] == "from-the-browser"
    page.reload()
    page.wait_for_selector('#auth [data-token]')
    assert secret not in page.content()  # shown once

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(master.url + "/")
    page.wait_for_url("**/login?next=/")
    assert page.console_errors == [], page.console_errors
