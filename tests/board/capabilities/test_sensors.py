"""Sensor modules on one virtual board (real MicroPython, commands over CoAP), values set through the board's
inputs and changed while it runs; selftests and the button's events in the runner.

The BME280 is checked three ways: against the values the test sets (the shim inverts the datasheet's integer
compensation), against the datasheet's own worked example (raw ADC values in, 25.08 °C and 100653 Pa out), and
against the datasheet's floating-point formulas computed here in CPython (independent of both the module's
and the shim's integer code).
"""

import asyncio
import time

import pytest
from aiocoap.numbers.codes import Code

from tests.board.capabilities.helpers import command, finish, result, runner, start_board, write_inputs

OW, DHT, ADC_PIN, TMP36, BUTTON = 4, 15, 35, 34, 5
CAPS = {
    "ds18b20": {"pin": OW},
    "dht22": {"pin": DHT},
    "bme280": {"sda": 21, "scl": 22},
    "analog": {"pin": ADC_PIN, "scale": 100, "offset": -50, "unit": "°C", "decimals": 1},
    "temperature": {"pin": TMP36},
    "button": {"pin": BUTTON},
}
# Six capabilities on one board, and the shims are Python models of what the ESP32 does in C (1-Wire and DHT
# timing, a BME280's registers): they take heap a real board would not spend, beyond the share the default heap
# gives the shims every board loads (docs/agent.md, "The virtual board's heap").
HEAP = 256 * 1024


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    board = start_board(tmp_path_factory.mktemp("sensors"), "sensors", CAPS, heapsize=HEAP)
    board.set_input(
        onewire={OW: [21.5, -3.25]},
        dht={DHT: {"celsius": -4.3, "humidity": 56.7}},
        bme280={"celsius": 21.37, "hpa": 1001.3, "humidity": 45.2},
        adc={ADC_PIN: 712_300, TMP36: 750_000},
        pins={BUTTON: 1},
    )
    board.start()
    board.wait_ready()
    yield board
    board.stop()


async def test_ds18b20_reads_every_sensor_after_a_full_conversion(board, client):
    started = time.monotonic()
    first = await result(client, board, "ds18b20", "read")
    assert time.monotonic() - started >= 0.75  # read earlier, a DS18B20 still holds its last value (85 °C)
    assert first["celsius"] == 21.5
    assert sorted(first["sensors"].values()) == [-3.25, 21.5]
    assert all(len(rom) == 16 and rom.startswith("28") for rom in first["sensors"])
    board.set_input(onewire={OW: [22.0625, None]})  # warmer; the second sensor unplugged
    second = await result(client, board, "ds18b20", "read")
    assert second == {"celsius": 22.06, "sensors": {rom: 22.06 for rom, c in first["sensors"].items() if c == 21.5}}


async def test_dht22_reads_at_most_every_two_seconds(board, client):
    assert await result(client, board, "dht22", "read") == {"celsius": -4.3, "humidity": 56.7}
    board.set_input(dht={DHT: {"celsius": 24.1, "humidity": 40.0}})
    # within 2 s: the last measurement again (the shim's DHT22 would not answer a second one)
    assert await result(client, board, "dht22", "read") == {"celsius": -4.3, "humidity": 56.7}
    await asyncio.sleep(2.0)
    assert await result(client, board, "dht22", "read") == {"celsius": 24.1, "humidity": 40.0}


async def test_bme280_gives_back_what_the_chip_measures(board, client):
    answer = await result(client, board, "bme280", "read")
    assert answer["celsius"] == 21.37
    assert abs(answer["hpa"] - 1001.3) <= 0.01 and abs(answer["humidity"] - 45.2) <= 0.1
    board.set_input(bme280={"celsius": -12.5, "hpa": 963.8, "humidity": 88.0})
    answer = await result(client, board, "bme280", "read")
    assert answer["celsius"] == -12.5
    assert abs(answer["hpa"] - 963.8) <= 0.01 and abs(answer["humidity"] - 88.0) <= 0.1


def float_compensation(adc_t, adc_p, adc_h):
    """The BME280 datasheet's floating-point compensation (section 8.1) with the shim's trimming constants."""
    t1, t2, t3 = 27504, 26435, -1000
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000
    h1, h2, h3, h4, h5, h6 = 75, 362, 0, 313, 50, 30
    var1 = (adc_t / 16384 - t1 / 1024) * t2
    var2 = (adc_t / 131072 - t1 / 8192) ** 2 * t3
    t_fine = var1 + var2
    var1 = t_fine / 2 - 64000
    var2 = var1 * var1 * p6 / 32768 + var1 * p5 * 2
    var2 = var2 / 4 + p4 * 65536
    var1 = (p3 * var1 * var1 / 524288 + p2 * var1) / 524288
    var1 = (1 + var1 / 32768) * p1
    p = 1048576 - adc_p
    p = (p - var2 / 4096) * 6250 / var1
    p = p + (p9 * p * p / 2147483648 + p * p8 / 32768 + p7) / 16
    h = t_fine - 76800
    h = (adc_h - (h4 * 64 + h5 / 16384 * h)) * (h2 / 65536 * (1 + h6 / 67108864 * h * (1 + h3 / 67108864 * h)))
    h = h * (1 - h1 * h / 524288)
    return t_fine / 5120, p / 100, min(max(h, 0), 100)


async def test_bme280_applies_the_datasheet_formulas(board, client):
    raw = {"t": 519888, "p": 415148, "h": 30000}  # T and P: the datasheet's worked example
    board.set_input(bme280={"raw": raw})
    answer = await result(client, board, "bme280", "read")
    assert answer["celsius"] == 25.08 and answer["hpa"] == 1006.53
    celsius, hpa, humidity = float_compensation(raw["t"], raw["p"], raw["h"])
    assert abs(answer["celsius"] - celsius) < 0.01 and abs(answer["hpa"] - hpa) < 0.01
    assert abs(answer["humidity"] - humidity) < 0.1 and 10 < humidity < 90


async def test_bme280_unplugged_answers_an_error_and_recovers(board, client):
    board.set_input(bme280={"present": False})
    code, body = await command(client, board, "bme280", "read")
    assert code == Code.INTERNAL_SERVER_ERROR and "19" in body["error"]  # OSError ENODEV, as on the ESP32
    board.set_input(bme280={"celsius": 18.0, "hpa": 1000.0, "humidity": 50.0})
    assert (await result(client, board, "bme280", "read"))["celsius"] == 18.0


async def test_analog_scales_the_voltage_and_tmp36_keeps_its_answer(board, client):
    assert await result(client, board, "analog", "read") == {"value": 21.2, "uv": 712_300}
    assert await result(client, board, "temperature", "read") == {"celsius": 25.0}
    board.set_input(adc={ADC_PIN: 1_000_000})
    assert await result(client, board, "analog", "read") == {"value": 50.0, "uv": 1_000_000}


async def test_button_state_reads_the_pin(board, client):
    assert (await result(client, board, "button", "state"))["pressed"] is False
    board.set_input(pins={BUTTON: 0})  # active low: pressed
    await asyncio.sleep(0.2)
    assert (await result(client, board, "button", "state"))["pressed"] is True
    board.set_input(pins={BUTTON: 1})


def test_selftests_refuse_missing_or_wrong_hardware(tmp_path):
    write_inputs(
        tmp_path,
        {
            "onewire": {str(OW): []},
            "i2c": {"118": {"chip": "bme280", "chip_id": 0x58}},
            "dht": {str(DHT): {"absent": True}},
        },
    )
    assert "no DS18B20" in runner("ds18b20", {"pin": OW}, [["selftest"]], tmp_path)[1]["error"]
    assert "0x58" in runner("bme280", {}, [["selftest"]], tmp_path)[1]["error"]
    assert "OSError" in runner("dht22", {"pin": DHT}, [["selftest"]], tmp_path)[1]["error"]
    assert "GPIO 25" in runner("analog", {"pin": 25}, [], tmp_path)[0]["setup_error"]  # ADC2: not with Wi-Fi
    write_inputs(
        tmp_path,
        {
            "onewire": {str(OW): [20.0]},
            "i2c": {"119": {"chip": "bme280"}},
            "dht": {str(DHT): {"celsius": 20.0, "humidity": 50.0}},
        },
    )
    assert runner("ds18b20", {"pin": OW}, [["selftest"]], tmp_path)[1] == {"selftest": "ok"}
    assert runner("bme280", {"address": 119}, [["selftest"]], tmp_path)[1] == {"selftest": "ok"}
    assert runner("dht22", {"pin": DHT}, [["selftest"]], tmp_path)[1] == {"selftest": "ok"}


def test_button_emits_debounced_presses_only(tmp_path):
    """run(emit) in the runner: a 15 ms spike gives nothing; a bouncing press and release give one event each."""
    write_inputs(tmp_path, {"pins": {str(BUTTON): 1}})
    proc = runner(
        "button", {"pin": BUTTON, "debounce_ms": 80, "poll_ms": 5}, [["run", 2200]], tmp_path, background=True
    )
    time.sleep(0.5)  # the runner starts (and samples the released level)

    def level(value, hold):
        write_inputs(tmp_path, {"pins": {str(BUTTON): value}})
        time.sleep(hold)

    level(0, 0.015)  # a spike (interference on a long wire)
    level(1, 0.3)
    pressed_at = time.time()
    for value in (0, 1, 0, 1, 0):  # contact bounce, 10 ms each, then held
        level(value, 0.01)
    level(0, 0.4)
    released_at = time.time()
    level(1, 0.01)
    level(0, 0.01)  # bounce on release
    level(1, 0.3)
    events = [line for line in finish(proc) if "event" in line]
    assert [e["event"] for e in events] == [{"pressed": True, "count": 1}, {"pressed": False, "count": 1}]
    assert events[0]["t"] / 1e9 - pressed_at >= 0.08 + 0.04  # debounce after the last bounce
    assert events[1]["t"] / 1e9 - released_at >= 0.08
