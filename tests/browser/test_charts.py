"""A sensor's history on its board's page: the virtual TMP36 of temp-1 is set to one temperature after another while
the board reports every second; the chart on temp-1's page draws those readings with their unit, the live state
shows the last one, and GET /api/devices/temp-1/readings?range=24h answers the same downsampled buckets."""

from __future__ import annotations

from tests.browser.conftest import log_in
from tests.support.waits import wait_until

TMP36_PIN = 34
CELSIUS = (20.0, 25.0, 30.0)  # TMP36: 500 mV at 0 °C, 10 mV per °C


def test_the_chart_shows_what_the_tmp36_read(master, board_factory, page):
    r = master.put("/api/roles/thermo", json={"modules": {"temperature": {"pin": TMP36_PIN, "telemetry_s": 1}}})
    assert r.status_code == 200, r.text
    board = board_factory("temp-1", master, role="thermo")
    for celsius in CELSIUS:
        board.set_input(adc={TMP36_PIN: int((500 + celsius * 10) * 1000)})  # microvolts
        wait_until(
            lambda: any(r["value"] == celsius for r in master.get("/api/devices/temp-1/readings", params={"limit": 5})),
            timeout=30,
            what=f"temp-1 reporting {celsius} °C",
            explain=lambda: f"{master.log_tail()}\n{board.console_text()[-1500:]}",
        )

    ranged = master.get("/api/devices/temp-1/readings", params={"range": "24h"})
    (series,) = [s for s in ranged["series"] if (s["capability"], s["path"]) == ("temperature", "celsius")]
    assert series["unit"] == "°C" and ranged["range"] == "24h" and ranged["bucket_s"] == 360
    assert min(b["min"] for b in series["buckets"]) == 20.0 and max(b["max"] for b in series["buckets"]) == 30.0
    assert master.request("GET", "/api/devices/temp-1/readings", params={"range": "1y"}).status_code == 400

    log_in(page, master)
    page.goto(master.url + "/devices/temp-1")
    figure = page.locator('figure[data-series="temperature.celsius"]')
    figure.wait_for()
    assert figure.get_attribute("data-unit") == "°C"
    caption = figure.locator("figcaption").inner_text()
    assert "min 20.00 °C" in caption and "max 30.00 °C" in caption, caption
    assert int(figure.get_attribute("data-readings")) >= len(CELSIUS)
    assert figure.locator("polyline.line, circle.dot").count() >= 1  # drawn
    live = page.locator('#device-live [data-state="temperature.celsius"]')
    assert "°C" in live.inner_text()
    assert page.console_errors == [], page.console_errors
