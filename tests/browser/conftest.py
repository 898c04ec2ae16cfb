"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

Chromium is a test requirement like PostgreSQL: `tools/dev test` installs it. Where it is missing the browser
tests fail with a message saying how to get it; they never skip silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.masters import ADMIN, ADMIN_PASSWORD

CHROMIUM = Path(os.environ.get("PIFLEET_CHROMIUM", "/usr/bin/chromium"))

# We run as root in CI (so no sandbox), and in a closed network: nothing may phone home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")  # not longer: sync Playwright keeps an event loop running in this thread
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser tests need Debian's chromium package "
            f"(`apt-get install chromium`, done by `tools/dev test`), or PIFLEET_CHROMIUM=/path/to/chromium",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh page; everything the page logs at error level is collected in `page.console_errors`."""
    context = browser.new_context()
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    # "Failed to load resource" says nothing more: add the URL, which the message's location holds.
    page.on(
        "console",
        lambda msg: (
            msg.type == "error" and page.console_errors.append(f"{msg.text} ({msg.location.get('url') or '?'})")
        ),
    )
    page.on("pageerror", lambda exc: page.console_errors.append(f"uncaught: {exc}"))
    yield page
    context.close()


def log_in(page, master, name: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    """Open the dashboard as a person does: sent to the login form, name and password, back to the dashboard."""
    page.goto(master.url + "/")
    page.wait_for_url("**/login?next=/")
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_url(master.url + "/")
