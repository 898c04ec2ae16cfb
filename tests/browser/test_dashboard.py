"""The dashboard in a real browser: a board appears online and then goes offline on the open page, live.

The page is loaded once. The board's arrival and (after its power is pulled) its lifetime expiry must reach the
page by server-sent events, without a reload and without waiting for the panel's slow fallback poll.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.browser.conftest import log_in
from tests.support.waits import wait_until

LIFETIME_S = 5  # the shortest registration lifetime the master accepts (fleet.registry.MIN_LIFETIME_S)

# Installed before the page's own scripts: records the SSE connection and every SSE notice htmx acts on.
RECORD_SSE = """
window.__sse = {open: 0, messages: []};
document.addEventListener("htmx:sseOpen", () => { window.__sse.open += 1; }, true);
document.addEventListener("htmx:sseMessage", (e) => {
  window.__sse.messages.push({type: e.detail && e.detail.type, target: e.target.id, t: Date.now()});
}, true);
"""


def state_of(page, name: str) -> str | None:
    cell = page.locator(f'[data-device="{name}"] [data-online]')
    return cell.get_attribute("data-online") if cell.count() else None


def devices_messages_since(page, t_ms: float) -> list[dict]:
    return page.evaluate("(t) => window.__sse.messages.filter(m => m.type === 'devices' && m.t >= t)", t_ms)


def test_board_goes_online_then_offline_without_reload(master, board_factory, page):
    page.add_init_script(RECORD_SSE)
    log_in(page, master)
    page.wait_for_selector("#devices table")
    wait_until(
        lambda: page.evaluate("window.__sse.open") >= 1,
        timeout=10,
        what="the page's SSE connection",
        explain=master.log_tail,
    )
    page.evaluate("window.__marker = 1")
    assert state_of(page, "blind-1") is None

    t0 = page.evaluate("Date.now()")
    board = board_factory("blind-1", master, role="blind", lifetime=LIFETIME_S)
    page.wait_for_selector('[data-device="blind-1"] [data-online="true"]', timeout=30_000)
    assert page.locator('[data-device="blind-1"] .state').inner_text() == "online"
    assert devices_messages_since(page, t0), "the board's arrival came without a 'devices' server-sent event"

    # A job saved through the API shows up in the timeline, with its follow-up, without a reload.
    wait_until(lambda: master.device("blind-1")["capabilities"], what="blind-1's capabilities", explain=master.log_tail)
    move = {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 5}}
    job = {
        "name": "evening",
        "target": {"device": "blind-1"},
        "action": move,
        "trigger": {"type": "cron", "expr": "0 20 * * *", "tz": "Europe/Berlin"},
        "follow_ups": [
            {
                "action": dict(move, params={"direction": "up", "seconds": 5}),
                "trigger": {"type": "next", "time": "07:00", "tz": "Europe/Berlin"},
            }
        ],
    }
    assert master.post("/api/jobs", job).status_code == 201
    page.wait_for_selector('#timeline [data-timeline="evening"]', timeout=10_000)
    assert "(follow-up)" in page.locator("#timeline").inner_text()

    # The heartbeat keeps it online past one lifetime. The marker that its registration would have expired by now:
    # the master received a heartbeat more than a lifetime (and the registry's 1 s watch) after the last one it
    # had when we looked.
    def last_seen() -> datetime:
        return datetime.fromisoformat(master.device("blind-1")["last_seen"])

    expiry = last_seen() + timedelta(seconds=LIFETIME_S + 1)
    wait_until(
        lambda: last_seen() >= expiry,
        timeout=LIFETIME_S * 4,
        what="a heartbeat more than one lifetime later",
        explain=lambda: f"{master.log_tail()}\nblind-1 console:\n{board.console_text()[-2000:]}",
    )
    assert state_of(page, "blind-1") == "true"

    t_kill = page.evaluate("Date.now()")
    board.kill()
    # Offline at the latest one lifetime after the last heartbeat, plus the registry's 1 s watch and slack —
    # well before the panel's 10 s fallback poll could be what updates it.
    page.wait_for_selector('[data-device="blind-1"] [data-online="false"]', timeout=(LIFETIME_S + 4) * 1000)
    elapsed = (page.evaluate("Date.now()") - t_kill) / 1000
    assert page.locator('[data-device="blind-1"] .state').inner_text() == "offline"
    assert devices_messages_since(page, t_kill), "went offline without a 'devices' server-sent event"
    assert elapsed <= LIFETIME_S + 3, f"offline shown {elapsed:.1f} s after the power was cut"

    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert page.evaluate("window.__sse.open") == 1, "the event stream was reconnected"
    assert page.console_errors == [], page.console_errors
