"""What a real ESP32 does that the 64-bit unix port would hide, held by the virtual board and the modules.

- Ticks: ticks_ms() wraps at 2^30 ms and ticks_diff() spans ±6.2 days (micropython/shims/_simticks.py, with
  PIFLEET_SIM_TICKS): a run, a dead time and a debounce across the wrap keep their timing, and after a week
  without a move (ticks_diff negative) the dead time is not days long and a DHT22 reading is not served again.
- Pins: the virtual Pin refuses what the port refuses (no such GPIO, an input-only pin as output) and what
  kills the board (the SPI flash pins); role modules refuse pins by the chip's list (agent/pins.py).
- PWM: 16 channels; the motor gives its channel back when it stops, so role switches do not run out.
- ADC: the temperature module averages noisy readings.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

from pifleet.sim.board import SHIMS, micropython_binary
from tests.board.capabilities.helpers import CAPABILITIES, REPO, finish, result, runner, start_board, write_inputs
from tests.support.pins import high_periods, never_both_high

WRAP = 1 << 30  # the ESP32 port's ticks period
WEEK_MS = 7 * 24 * 3600 * 1000  # a holiday: beyond ticks_diff's ±2^29 ms
TOLERANCE = 0.1  # s, above; 10 ms below: pins.log is wall clock, the dead time counts ticks_ms()


@pytest.fixture
def near_wrap(monkeypatch):
    """Boards and runners started in this test count ticks from `ms` before the wrap."""

    def start(ms: int) -> None:
        monkeypatch.setenv("PIFLEET_SIM_TICKS", str(WRAP - ms))

    return start


def pin_history(io: Path) -> list[tuple[float, int, int]]:
    lines = (io / "pins.log").read_text().splitlines() if (io / "pins.log").exists() else []
    return [(int(t) / 1e9, int(p), int(v)) for t, p, v in (line.split() for line in lines)]


def results(lines: list[dict]) -> list:
    return [line.get("result", line.get("error")) for line in lines if "result" in line or "error" in line]


def test_motor_keeps_its_timing_across_the_wrap_and_after_a_week(tmp_path, near_wrap):
    near_wrap(200)  # the boot's dead time (300 ms) crosses the wrap
    cfg = {"fwd_pin": 12, "rev_pin": 13, "dead_time_ms": 300}
    steps = [
        ["call", "run", {"direction": "fwd", "seconds": 0.3}],
        ["call", "run", {"direction": "rev", "seconds": 0.2}],  # reversing: the dead time again
        ["skip", WEEK_MS],  # a week without a move: ticks_diff(now, stopped) is negative on an ESP32
        ["call", "run", {"direction": "fwd", "seconds": 0.2}],
    ]
    lines = runner("motor", cfg, steps, tmp_path)
    ready = lines[0]["ready"] / 1e9
    fwd, rev, again = results(lines)
    assert fwd["stopped"] == rev["stopped"] == again["stopped"] == "elapsed", lines
    assert abs(fwd["ran_ms"] - 300) < TOLERANCE * 1000 and abs(rev["ran_ms"] - 200) < TOLERANCE * 1000
    history = pin_history(tmp_path)
    assert never_both_high(history, 12, 13)
    (first, second), (reverse,) = high_periods(history, 12), high_periods(history, 13)
    assert 0.2 <= first[0] - ready < 0.3 + TOLERANCE  # dead time after boot (counted from setup), across the wrap
    assert 0.29 <= reverse[0] - first[1] < 0.3 + TOLERANCE  # dead time before reversing
    # a week later the motor stopped long ago: no dead time at all (not days of it, not an error)
    assert second[0] - reverse[1] < 0.3


def test_blind_counts_its_position_across_the_wrap(tmp_path, near_wrap):
    near_wrap(600)  # the calibration run starts before the wrap and ends after it
    cfg = {"up_pin": 25, "down_pin": 26, "up_s": 1, "down_s": 1, "dead_time_ms": 100}
    steps = [
        ["call", "calibrate", {}],  # fully up: 1 s of travel and 0.1 s over-run
        ["call", "move", {"direction": "down", "seconds": 0.5}],
        ["skip", WEEK_MS],  # then a week without a move
        ["call", "goto", {"position": 100}],  # reversing: the motor stopped long ago
    ]
    calibrated, down, opened = results(runner("blind", cfg, steps, tmp_path))
    assert calibrated["position"] == 100 and abs(calibrated["ran_ms"] - 1100) < TOLERANCE * 1000
    # the position follows the time the motor really ran (a loaded machine runs it a few ms long)
    assert down["position"] == int(100 - down["ran_ms"] / 10 + 0.5) and abs(down["ran_ms"] - 500) < TOLERANCE * 1000
    assert opened["position"] == 100 and abs(opened["ran_ms"] - 600) < TOLERANCE * 1000  # half, and over-run
    history = pin_history(tmp_path)
    assert never_both_high(history, 25, 26)
    (calibration, opening), (closing,) = high_periods(history, 25), high_periods(history, 26)
    assert 0.09 <= closing[0] - calibration[1] < 0.1 + TOLERANCE  # the dead time, across the wrap
    assert opening[0] - closing[1] < 0.1  # a week later: no dead time (not days of it)


def test_dht22_reading_a_week_old_is_not_served_again(tmp_path, near_wrap):
    near_wrap(1000)
    write_inputs(tmp_path, {"dht": {"4": {"celsius": 20.0, "humidity": 50.0}}})
    steps = [["call", "read", {}], ["sleep", 2500], ["skip", WEEK_MS], ["call", "read", {}]]
    proc = runner("dht22", {"pin": 4}, steps, tmp_path, background=True)
    time.sleep(1.0)  # the first reading is taken
    write_inputs(tmp_path, {"dht": {"4": {"celsius": 24.5, "humidity": 41.0}}})
    first, second = results(finish(proc))
    assert first == {"celsius": 20.0, "humidity": 50.0}
    assert second == {"celsius": 24.5, "humidity": 41.0}  # measured again, not the week-old reading


def test_button_debounces_across_the_wrap(tmp_path, near_wrap):
    near_wrap(300)
    write_inputs(tmp_path, {"pins": {"5": 1}})
    proc = runner("button", {"pin": 5, "debounce_ms": 80, "poll_ms": 5}, [["run", 1500]], tmp_path, background=True)
    time.sleep(0.28)  # pressed just before the wrap, held across it
    write_inputs(tmp_path, {"pins": {"5": 0}})
    time.sleep(0.5)
    write_inputs(tmp_path, {"pins": {"5": 1}})
    events = [line["event"] for line in finish(proc) if "event" in line]
    assert events == [{"pressed": True, "count": 1}, {"pressed": False, "count": 1}]


async def test_a_board_booted_near_the_wrap_serves_across_it(tmp_path, near_wrap, client):
    """The whole agent on the ESP32's clock: it boots 3 s before the wrap, a move straddles it, a reversal
    after it waits its dead time, and the board keeps answering."""
    near_wrap(3000)
    board = start_board(tmp_path, "wrap", {"blind": {"up_pin": 25, "down_pin": 26, "up_s": 2, "down_s": 2}})
    board.start()
    try:
        board.wait_ready()
        assert "ticks_ms() starts at %d" % (WRAP - 3000) in board.console_text()
        up = await result(client, board, "blind", "move", direction="up", seconds=2.5)
        asked = time.time()
        down = await result(client, board, "blind", "move", direction="down", seconds=0.5)
        assert up["stopped"] == down["stopped"] == "elapsed" and down["position"] == 75
        assert abs(up["ran_ms"] - 2500) < TOLERANCE * 1000 and abs(down["ran_ms"] - 500) < TOLERANCE * 1000
        history = board.pin_history()
        ((_, up_off),), ((down_on, _),) = high_periods(history, 25), high_periods(history, 26)
        # the default dead time after the wrap: 0.5 s from the stop, or at once when the command came later than
        # that (on a loaded machine the answer to "up" and the next request can take longer than the dead time);
        # a second more for the board to read the command and act on a loaded machine (CI: 0.37 s past 0.5 s). A
        # wrong wrap shows either way: no dead time at all, or one of 49 days
        assert 0.49 <= down_on - up_off and down_on < max(up_off + 0.5, asked) + 1.0
        assert (await result(client, board, "blind", "position"))["position"] == 75
    finally:
        board.stop()


def test_each_output_is_set_safe_at_boot_on_its_own(tmp_path):
    """A configuration naming pins the port refuses (GPIO 24, 31, 40) must not leave the other outputs
    undriven: boot.py sets each one low by itself. The relay and the blind here refuse their setup before they
    touch a pin, so a low level on 25 and 27 is boot.py's."""
    caps = {
        "motor": {"fwd_pin": 24, "rev_pin": 31, "pwm_pin": 40},
        "relay": {"out_pin": 27, "spare_pin": 40, "restore": "sometimes"},
        "blind": {"up_pin": 25, "down_pin": 25},
    }
    board = start_board(tmp_path, "boot", caps)
    board.start()
    try:
        board.wait_ready()
        console = board.console_text()
        assert {pin for _, pin, level in board.pin_history() if level == 0} == {25, 27}, console
        assert "GPIO 24 of the ESP32 does not exist" in console and "restore must be" in console
    finally:
        board.stop()


def run_micropython(code: str, io: Path) -> subprocess.CompletedProcess:
    binary = micropython_binary()
    if binary is None:
        pytest.skip("no micropython binary on this machine")
    io.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PIFLEET_SIM_IO=str(io),
        MICROPYPATH=os.pathsep.join([str(CAPABILITIES), str(REPO / "micropython"), str(SHIMS), ".frozen"]),
    )
    return subprocess.run([binary, "-c", code], env=env, cwd=io, capture_output=True, text=True, timeout=60)


def test_virtual_pin_refuses_what_the_esp32_port_refuses(tmp_path):
    code = """
from machine import Pin
for args in ((24,), (31,), (40,), (34, Pin.OUT), (7, Pin.OUT), (9, Pin.IN)):
    try:
        Pin(*args)
        print(args, "ok")
    except Exception as e:
        print(args, type(e).__name__, e)
Pin(6)  # naming a flash pin does nothing to it
Pin(20, Pin.OUT, value=0)  # the port has 20 (not every module does: agent/pins.py refuses it)
Pin(36, Pin.IN)
print("done")
"""
    out = run_micropython(code, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["(24,) ValueError invalid pin", "(31,) ValueError invalid pin", "(40,) ValueError invalid pin"]
    assert lines[3] == "(34, 3) ValueError pin can only be input"
    assert lines[4].startswith("(7, 3) RuntimeError GPIO 7 drives the SPI flash")
    assert lines[5].startswith("(9, 1) RuntimeError GPIO 9 drives the SPI flash")
    assert lines[-1] == "done"


@pytest.mark.parametrize(
    ("module", "cfg", "why"),
    [
        ("blind", {"up_pin": 7, "down_pin": 26}, "GPIO 7 of the ESP32 drives the SPI flash"),
        ("relay", {"out_pin": 1}, "GPIO 1 of the ESP32 is the serial console"),
        ("motor", {"fwd_pin": 24, "rev_pin": 13}, "GPIO 24 of the ESP32 does not exist"),
        ("motor", {"fwd_pin": 12, "rev_pin": 36}, "GPIO 36 of the ESP32 is input-only"),
        ("dht22", {"pin": 20}, "GPIO 20 of the ESP32 does not exist"),
        ("temperature", {"pin": 25}, "GPIO 25 of the ESP32 is not an ADC1 pin"),
        ("button", {"pin": 3}, "GPIO 3 of the ESP32 is the serial console"),
        ("button", {"pin": 39}, "GPIO 39 has no internal pull resistors"),
        ("bme280", {"sda": 34}, "GPIO 34 of the ESP32 is input-only"),
    ],
)
def test_modules_refuse_pins_by_the_chips_list(tmp_path, module, cfg, why):
    assert why in runner(module, cfg, [], tmp_path)[0]["setup_error"]


def test_a_strapping_pin_works_with_a_warning(tmp_path):
    out = run_micropython("import relay\nrelay.setup({'out_pin': 12})\nprint('set up')", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "GPIO 12 of the ESP32 is a strapping pin" in out.stdout and "set up" in out.stdout


def test_motor_gives_its_pwm_channel_back_across_role_switches(tmp_path):
    """Seventeen switches, each with the bridge's enable on another pin: the ESP32's 16 channels suffice only
    if each motor's stop() releases its own; a PWM the module forgot is still claimed (the port's table)."""
    code = """
import motor
from machine import PWM, Pin
pins = [2, 4, 5, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27, 32, 33]
for n in pins:
    m = motor.setup({"fwd_pin": 12, "rev_pin": 13, "pwm_pin": n})
    motor.stop(m)
print("switched", len(pins))
kept = [PWM(Pin(n), freq=1000, duty_u16=0) for n in pins[:16]]
try:
    PWM(Pin(pins[16]), freq=1000, duty_u16=0)
except RuntimeError as e:
    print(e)
"""
    out = run_micropython(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["switched 17", "out of PWM channels:16"]


def test_temperature_averages_noisy_readings(tmp_path):
    # successive readings cycle through the list: ±40 mV of noise, ±4 °C for a TMP36
    write_inputs(tmp_path, {"adc": {"34": [710_000, 790_000]}})
    assert results(runner("temperature", {"pin": 34}, [["call", "read", {}]], tmp_path)) == [{"celsius": 25.0}]
    single = runner("temperature", {"pin": 34, "samples": 1}, [["call", "read", {}]], tmp_path)
    assert results(single) == [{"celsius": 21.0}]
