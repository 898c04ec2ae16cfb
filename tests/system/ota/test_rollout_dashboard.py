"""Firmware rollouts from the dashboard, in a real browser (Chromium, tests/browser/conftest.py): on the Flashing
page a person picks an OTA-capable image and a board and starts a rollout; the page shows the board's state and the
share of the image sent, growing while it is sent, without a reload (the `flash` events of its stream), then done;
a refusal shows at its field; an image the board cannot run ends rolled back, and the rollout halted, each with its
reason. Real master, real virtual board (tests/system/ota/test_rollout.py)."""

from __future__ import annotations

import pytest

from pifleet.sim.board import VirtualBoard
from tests.browser.conftest import browser, log_in, page  # noqa: F401 — the browser fixtures
from tests.support.waits import wait_until
from tests.system.ota.test_rollout import A, B, add, flash, image, running_version

pytestmark = pytest.mark.timeout(300)

LOADED = "() => !document.querySelector('main').innerText.includes('loading')"


def test_a_rollout_started_and_followed_on_the_flashing_page(master, tmp_path, page):  # noqa: F811
    first, target = add(master, image(A)), add(master, image(B, size=100_000))  # ~200 blocks: seen while sent
    broken = add(master, image("v1.26.0", no_agent=True))
    board = VirtualBoard("ota-ui", tmp_path / "ota-ui", erased=True, master=master.coap)
    board.start()
    try:
        flash(master, board, first)
        wait_until(
            lambda: master.device("ota-ui")["online"],
            timeout=30,
            what="ota-ui online",
            explain=lambda: board.console_text()[-3000:] + master.log_tail(),
        )
        log_in(page, master)
        page.goto(master.url + "/flashing")
        page.wait_for_function(LOADED)
        form = page.locator("#rollout-form form")
        options = form.locator('select[name="firmware"] option').all_inner_texts()
        assert any(f"MicroPython {B} (#{target})" in o for o in options), options  # OTA-capable images only

        # a refusal at its field: a role and a board at once
        form.locator('select[name="firmware"]').select_option(str(target))
        form.locator('select[name="role"]').select_option("blind")
        form.get_by_label("ota-ui").check()
        form.locator("button[type=submit]").click()
        page.wait_for_selector("#rollout-message")
        assert "give either role or devices" in page.locator("#rollout-message").inner_text()
        assert page.locator('#rollout-form fieldset[aria-invalid="true"] input[value="ota-ui"]').is_checked()
        assert master.get("/api/firmware/rollouts") == []  # nothing started

        # every state and percentage the page shows for the board, as it shows them (no reload)
        page.evaluate(
            """() => { window.seen = [];
            new MutationObserver(() => {
              const row = document.querySelector('#firmware-rollouts tr[data-device="ota-ui"]');
              if (!row) return;
              const now = row.dataset.state + ' ' + row.querySelector('[data-progress]').textContent.trim();
              if (now !== window.seen[window.seen.length - 1]) window.seen.push(now);
            }).observe(document.querySelector('#firmware-rollouts'), {subtree: true, childList: true}); }"""
        )
        form = page.locator("#rollout-form form")  # the form was drawn again with the refusal
        form.locator('select[name="role"]').select_option("")
        form.locator("button[type=submit]").click()
        page.wait_for_selector("#rollout-message:has-text('started')")
        assert f"MicroPython {B} to ota-ui" in page.locator("#rollout-message").inner_text()
        (started,) = master.get("/api/firmware/rollouts")
        done = f'#firmware-rollouts [data-firmware-rollout="{started["id"]}"][data-state="done"]'
        page.wait_for_selector(done, timeout=120_000)
        seen = page.evaluate("window.seen")
        assert seen[-1] == "done 100 %", seen
        sending = [int(s.split()[1]) for s in seen if s.startswith("transferring ")]
        assert [p for p in sending if 0 < p < 100], f"no share of the image shown while it was sent: {seen}"
        assert sending == sorted(sending), seen
        assert running_version(board) == B
        row = page.locator(f'{done} tr[data-device="ota-ui"]')
        assert f"{A} → {B}" in row.inner_text() and row.locator("progress").get_attribute("value") == "100"

        # an image whose agent cannot start: the board goes back by itself, the rollout halts, both say why
        wait_until(
            lambda: master.device("ota-ui")["online"],
            timeout=30,
            what="ota-ui online on B",
            explain=lambda: board.console_text()[-3000:] + master.log_tail(),
        )
        form = page.locator("#rollout-form form")
        form.locator('select[name="firmware"]').select_option(str(broken))
        form.get_by_label("ota-ui").check()
        form.locator("button[type=submit]").click()
        page.wait_for_selector("#rollout-message:has-text('MicroPython v1.26.0 to ota-ui')")
        halted = page.locator('#firmware-rollouts [data-state="halted"]')
        halted.wait_for(timeout=150_000)
        assert halted.locator("[data-reason]").first.inner_text().startswith("halted: ota-ui: ")
        row = halted.locator('tr[data-device="ota-ui"]')
        assert row.get_attribute("data-state") == "rolled_back"
        assert "did not confirm" in halted.locator('tr[data-reason-of="ota-ui"]').inner_text()
        assert running_version(board) == B
        assert page.console_errors == [], page.console_errors
    finally:
        board.kill()
