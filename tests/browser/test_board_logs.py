"""The board page's live log panel (issue 13, item 5): the lines the board printed before the page opened, then each
batch as it arrives, on the page's one event stream; a line is shown as text, never as HTML."""

from __future__ import annotations

from tests.browser.conftest import log_in
from tests.support.logboards import LogBoard


def test_the_board_page_shows_its_log_and_follows_it(module_master, page):
    board = LogBoard(module_master, "panel-1", "24:0a:7f:10:00:03")
    board.register()
    board.log("agent: up\nrelay: on\n")
    log_in(page, module_master)
    page.goto(module_master.url + "/devices/panel-1")
    lines = page.locator(".device-logs .log-lines li .log-text")
    lines.filter(has_text="relay: on").wait_for()
    # the streams this page opens (listening from here on: the page we logged in on may still be opening its own)
    streams = []
    page.on("request", lambda r: r.url.split("?")[0].endswith("/api/events") and streams.append(r.url))
    page.reload()
    lines.filter(has_text="relay: on").wait_for()

    board.log('<img src=x onerror="alert(1)"> printed as text\n')
    lines.filter(has_text="printed as text").wait_for()  # came on the stream: the page was not reloaded
    assert lines.all_inner_texts() == ["agent: up", "relay: on", '<img src=x onerror="alert(1)"> printed as text']
    assert page.locator(".device-logs img").count() == 0
    assert page.locator(".device-logs .log-lines li time").first.get_attribute("datetime")
    assert len(streams) == 1 and streams[0].endswith("/api/events?logs=panel-1"), streams  # one stream per page
    assert page.console_errors == [], page.console_errors
