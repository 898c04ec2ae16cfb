"""The dashboard's pages in a real browser, on one master with one virtual blind (blind-1), in the order a person
would go: every page under the header menu renders at a phone's and a desk's width without console errors; the
board page's controls come from the blind's declared commands, and pressing "move" (down, 2 s) drives the virtual
board's down pin for 2 s, shows the blind's position falling while it runs (the board's state reports, pushed on
the event stream) and shows the execution, sent by the person; the chart draws stored readings
(downsampled by the master); the job editor shows a refusal at its field, previews the next runs, saves a job that
then shows in the list and on the timeline picture; a viewer sees the same pages without any control that changes
something, and the API refuses their command.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests.browser.conftest import log_in
from tests.support.masters import ADMIN, ADMIN_PASSWORD
from tests.support.pins import high_periods
from tests.support.waits import wait_until
from tests.system.e2e.helpers import DOWN_PIN

# every htmx part of a page has been filled in (they say "loading…" until then)
LOADED = "() => !document.querySelector('main').innerText.includes('loading')"
PAGES = ["/", "/devices/blind-1", "/jobs", "/timeline", "/roles", "/flashing", "/adoption", "/people"]
VIEWER, VIEWER_PASSWORD = "guest", "a viewer's password"
SPARE_MIN = 15  # the stored day of readings is this much younger than 24 h


def _store_readings(database_url: str, device_id: str, n: int) -> None:
    """A day of a sensor's history on blind-1 (one reading a minute, with an hour missing: the board was off) —
    what the telemetry of a board would have left in `readings`; a day cannot be waited for in a test."""

    now = datetime.now(UTC)
    rows = [
        (device_id, "climate", "celsius", 20 + (i % 60) / 10, now - timedelta(minutes=i))
        for i in range(n - SPARE_MIN)  # the oldest minutes left out: a slow run must not see them leave the 24 h
        if not 300 <= i < 360
    ]
    # psycopg (Huey's driver), not asyncpg: sync Playwright keeps an event loop running in this thread
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy("copy readings (device_id, capability, path, value, at) from stdin") as copy:
            for row in rows:
                copy.write_row(row)


def _add_viewer(master) -> None:
    with httpx.Client(base_url=master.url, timeout=30) as admin:
        r = admin.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        admin.headers["X-CSRF-Token"] = r.json()["csrf"]
        r = admin.post("/api/users", json={"name": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"})
        assert r.status_code == 201, r.text


@pytest.mark.timeout(300)  # a person's whole visit, page after page: ~100 s alone, more beside other test runs
def test_pages_board_controls_chart_job_editor_and_a_viewer(master, board_factory, browser, page, database_url):
    board = board_factory("blind-1", master, role="blind")
    wait_until(
        lambda: (d := master.device("blind-1")) and d["online"] and d["capabilities"],
        timeout=30,
        what="blind-1 online with its capabilities",
        explain=master.log_tail,
    )
    _store_readings(database_url, board.device_id, 24 * 60)
    log_in(page, master)

    # -- every page, at a phone's width and a desk's, without console errors --------------------------------------
    for path in PAGES:
        page.set_viewport_size({"width": 375, "height": 800})
        page.goto(master.url + path)
        page.wait_for_function(LOADED)
        assert page.locator("header nav a").count() >= 7, path
        for width in (375, 1400):  # the layout follows the width (media queries), no reload needed
            page.set_viewport_size({"width": width, "height": 800})
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{path} at {width} px is {overflow} px wider than the screen"
        assert page.console_errors == [], (path, page.console_errors)

    # -- the board page: controls from the declared commands ---------------------------------------------------
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(master.url + "/devices/blind-1")
    move = page.locator('form.command[data-capability="blind"][data-command="move"]')
    assert move.locator('select[name="direction"] option').all_inner_texts() == ["up", "down"]
    assert move.locator('input[type="number"][name="seconds"]').get_attribute("max") == "120"
    assert "s" in move.locator(".unit").inner_text()
    goto = page.locator('form.command[data-command="goto"] input[type="range"][name="position"]')
    assert (goto.get_attribute("min"), goto.get_attribute("max")) == ("0", "100")
    assert page.locator('form.command[data-command="stop"] [name]').count() == 0  # no parameters: a button
    assert page.get_by_label("seconds").first.is_visible()  # every control has its label

    # a refusal shows at its field, and nothing moves
    move.locator('select[name="direction"]').select_option("down")
    move.locator('input[name="seconds"]').evaluate("e => { e.removeAttribute('max'); e.value = '500'; }")
    move.locator("button[type=submit]").click()
    page.wait_for_selector('form.command[data-command="move"] .field-error[data-field="params.seconds"]:not(:empty)')
    assert high_periods(board.pin_history(), DOWN_PIN) == []
    # the browser logs the refused request itself (a 422 answer) as a console error: that one, and nothing else
    assert [e for e in page.console_errors if "422" not in e] == [], page.console_errors
    page.console_errors.clear()

    # a known position first: travel times of 3 s, then a calibration run (fully up: 3.3 s); the page shows it live
    for params in ({"up_s": 3, "down_s": 3}, {}):
        answer = master.post(
            "/api/devices/blind-1/commands", json={"capability": "blind", "command": "calibrate", "params": params}
        )
        assert answer.status_code in (200, 202), answer.text
    position = page.locator('#device-live [data-state="blind.position"] .state-value')
    wait_until(
        lambda: position.count() and position.inner_text() == "100",
        timeout=20,
        what="the page showing the blind at 100 %",
        explain=lambda: f"{master.log_tail()}\nstate: {master.get('/api/devices/blind-1/state')}",
    )
    # the calibration over-runs the end stop: the board says "100 %, moving up" first, then that it stopped
    wait_until(
        lambda: master.get("/api/devices/blind-1")["state"]["blind"]["values"] == {"position": 100, "moving": None},
        timeout=10,
        what="the blind stopped at 100 %",
        explain=lambda: str(master.get("/api/devices/blind-1/state")),
    )
    # every position the page shows from now on, as it shows it (no reload: the panel is updated in place)
    page.evaluate(
        """() => { window.shown = [];
        new MutationObserver(() => {
          const v = document.querySelector('#device-live [data-state="blind.position"] .state-value');
          if (v && v.textContent !== window.shown[window.shown.length - 1]) window.shown.push(v.textContent);
        }).observe(document.querySelector('main'), {subtree: true, childList: true, characterData: true}); }"""
    )

    # press "move", down for 2 s: the down pin is high for 2 s, the position falls on the page while the motor
    # runs, the execution shows, sent by this person
    since = board.pin_history()[-1][0] if board.pin_history() else 0.0
    move.locator('input[name="seconds"]').fill("2")
    move.locator("button[type=submit]").click()
    wait_until(
        lambda: [p for p in high_periods(board.pin_history(), DOWN_PIN, since) if p[1] != float("inf")],
        timeout=15,
        what="the down pin high and low again",
        explain=lambda: f"{master.log_tail()}\npage: {move.inner_text()}",
    )
    ((start, end),) = high_periods(board.pin_history(), DOWN_PIN, since)
    assert abs((end - start) - 2.0) <= 0.1, end - start
    wait_until(
        lambda: position.inner_text() == "33",  # 2 s of a 3 s travel down from 100 %
        timeout=5,
        what="the page showing where the blind stopped",
        explain=lambda: f"shown: {page.evaluate('window.shown')}, state: {master.get('/api/devices/blind-1/state')}",
    )
    shown = [int(v) for v in page.evaluate("window.shown")]
    # falling, seen on the way down (every half second when the machine keeps up; at least once under load)
    assert shown == sorted(shown, reverse=True) and shown[-1] == 33 and any(33 < v < 100 for v in shown), shown
    row = page.locator("#device-executions [data-execution]").first
    row.locator(".state.succeeded").wait_for(timeout=10_000)  # live: the page is not reloaded
    assert "blind.move" in row.inner_text() and f"sent by {ADMIN}" in row.inner_text(), row.inner_text()
    runs = master.get("/api/executions", params={"device": "blind-1", "limit": 5})
    assert runs[0]["source"] == "person" and runs[0]["actor"] == ADMIN

    # -- the chart: a day of readings, downsampled by the master, with the gap where the board was off ----------
    figure = page.locator('figure[data-series="climate.celsius"]')
    figure.wait_for()
    assert int(figure.get_attribute("data-readings")) == 24 * 60 - 60 - SPARE_MIN
    assert 0 < int(figure.get_attribute("data-points")) <= 240
    assert figure.locator("polyline.line").count() == 2  # broken where an hour is missing
    figure.locator('button:text-is("30d")').click()
    page.wait_for_selector('figure[data-series="climate.celsius"][data-range="30d"]')
    assert int(page.locator('figure[data-series="climate.celsius"]').get_attribute("data-points")) <= 240

    # -- the job editor: a refusal at its field, a preview of the next runs, saved, listed, on the timeline -----
    page.goto(master.url + "/jobs")
    page.wait_for_selector("#job-form")
    page.fill("#f-name", "evening")
    page.fill("#f-target-name", "blind-1")
    page.select_option("#f-action-command", "blind.move")
    page.wait_for_selector("#f-action-params-seconds")  # the command's parameters, from its schema
    page.select_option("#f-action-params-direction", "down")
    page.fill("#f-action-params-seconds", "5")
    page.fill("#f-trigger-expr", "0 25 * * *")
    page.click("#job-preview")
    error = page.locator('.field-error[data-field="trigger.expr"]')
    error.wait_for()
    assert "hour" in error.inner_text() or "25" in error.inner_text(), error.inner_text()
    assert page.locator("#f-trigger-expr").get_attribute("aria-invalid") == "true"
    page.fill("#f-trigger-expr", "*/30 * * * *")
    page.select_option("#f-follow_ups-0-action-command", "blind.move")
    page.wait_for_selector("#f-follow_ups-0-trigger-seconds")
    page.select_option("#f-follow_ups-0-action-params-direction", "up")
    page.fill("#f-follow_ups-0-action-params-seconds", "5")
    page.fill("#f-follow_ups-0-trigger-seconds", "600")
    page.click("#job-preview")
    page.wait_for_selector("#job-preview-result")
    assert page.locator("#job-preview-result [data-next-run]").count() == 5
    assert master.request("GET", "/api/jobs/evening").status_code == 404  # a preview saves nothing
    page.click("#job-save")
    page.wait_for_selector('#jobs [data-job="evening"]')
    job = master.get("/api/jobs/evening")["spec"]
    assert job["trigger"] == {"type": "cron", "expr": "*/30 * * * *", "tz": "UTC"}
    assert job["follow_ups"][0]["action"]["params"] == {"direction": "up", "seconds": 5.0}
    assert job["follow_ups"][0]["trigger"] == {"type": "delay", "seconds": 600.0}

    page.click("header nav >> text=Timeline")
    page.wait_for_selector('#timeline-picture a.mark[aria-label*="evening"]')
    lane = page.locator("#timeline-picture .lane-label")
    assert lane.all_text_contents() == ["blind-1"]
    assert page.locator("#timeline-picture line.now").count() == 1
    assert page.locator("#timeline-picture a.mark.follow-up").count() >= 1
    assert page.console_errors == [], page.console_errors

    # -- a viewer: the same pages, no control that changes something; the API refuses their command -------------
    _add_viewer(master)
    context = browser.new_context()
    viewer = context.new_page()
    viewer_errors: list[str] = []
    viewer.on("console", lambda m: m.type == "error" and viewer_errors.append(m.text))
    log_in(viewer, master, VIEWER, VIEWER_PASSWORD)
    for path in PAGES[:-1]:
        viewer.goto(master.url + path)
        viewer.wait_for_function(LOADED)
        changes = viewer.locator(
            "main form.command, main [hx-post], main form[method=post], main #job-form, main .actions button"
        )
        assert changes.count() == 0, (
            path,
            [changes.nth(i).evaluate("e => e.outerHTML") for i in range(changes.count())],
        )
    assert viewer.locator("header nav >> text=People").count() == 0
    csrf = viewer.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = viewer.request.post(
        master.url + "/api/devices/blind-1/commands",
        data={"capability": "blind", "command": "stop", "params": {}},
        headers={"X-CSRF-Token": csrf},
    )
    assert answer.status == 403, answer.text()
    assert viewer_errors == [], viewer_errors
    context.close()
