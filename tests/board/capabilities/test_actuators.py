"""Relay and motor modules on one virtual board (real MicroPython, commands over CoAP), and the relay's
inverted output and boot state in the runner.

What a user would notice: how long the relay or motor was on (from pins.log), the PWM duty while the motor
ran (pwm.log), never both bridge inputs high, the relay's state after a reset.
"""

import asyncio
import time

import pytest
from aiocoap.numbers.codes import Code

from tests.board.capabilities.helpers import command, power_on, pwm_log, result, runner, start_board
from tests.support.pins import high_periods, never_both_high

RELAY, FWD, REV, PWM = 27, 12, 13, 14
CAPS = {
    "relay": {"out_pin": RELAY, "restore": "last"},
    "motor": {"fwd_pin": FWD, "rev_pin": REV, "pwm_pin": PWM, "pwm_hz": 2000},
}
TOLERANCE = 0.08


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    board = start_board(tmp_path_factory.mktemp("act"), "actuators", CAPS)
    board.start()
    board.wait_ready()
    yield board
    board.stop()


def since_now(board):
    history = board.pin_history()
    return history[-1][0] if history else 0.0


async def test_relay_on_off_toggle_and_state(board, client):
    assert await result(client, board, "relay", "on") == {"on": True}
    assert board.pin_level(RELAY) == 1
    assert await result(client, board, "relay", "toggle") == {"on": False}
    assert board.pin_level(RELAY) == 0
    assert await result(client, board, "relay", "state") == {"on": False, "pulsing": False}


async def test_relay_pulse_goes_back_by_itself(board, client):
    since = since_now(board)
    answer = await result(client, board, "relay", "pulse", seconds=0.4)
    assert answer["on"] is True
    assert (await result(client, board, "relay", "state"))["pulsing"] is True
    await asyncio.sleep(0.6)
    ((on, off),) = high_periods(board.pin_history(), RELAY, since)
    assert abs((off - on) - 0.4) < TOLERANCE
    assert await result(client, board, "relay", "state") == {"on": False, "pulsing": False}


async def test_a_new_pulse_cancels_the_running_one(board, client):
    since = since_now(board)
    await result(client, board, "relay", "pulse", seconds=0.5)
    await asyncio.sleep(0.25)
    sent = time.time()
    await result(client, board, "relay", "pulse", seconds=0.5)  # the first pulse's end must not cut this one
    answered = time.time()
    await asyncio.sleep(0.8)
    ((on, off),) = high_periods(board.pin_history(), RELAY, since)
    # one high period, ending 0.5 s after the second pulse began (somewhere between its request and its answer:
    # on a loaded machine that takes a while), not 0.5 s after the first (CI: the request took 0.2 s)
    assert sent + 0.5 - TOLERANCE < off < answered + 0.5 + TOLERANCE and off - on > 0.7


async def test_a_pulse_from_on_is_a_power_cycle(board, client):
    await result(client, board, "relay", "on")
    since = since_now(board)
    await result(client, board, "relay", "pulse", seconds=0.3)
    assert board.pin_level(RELAY) == 0
    await asyncio.sleep(0.45)
    assert board.pin_level(RELAY) == 1
    lows = [t for t, pin, value in board.pin_history() if pin == RELAY and t > since]
    assert len(lows) == 2 and abs((lows[1] - lows[0]) - 0.3) < TOLERANCE


async def test_relay_restores_its_last_state_after_a_reset(board, client):
    assert board.pin_level(RELAY) == 1  # on, from the test before
    board.stop()  # the agent's shutdown switches it off: a relay must not stay on when the agent is gone
    assert board.pin_level(RELAY) == 0
    since = since_now(board)
    power_on(board)
    after = [(pin, value) for t, pin, value in board.pin_history() if pin == RELAY and t > since]
    assert after[-1] == (RELAY, 1), after  # low from boot.py, then on again: "last"
    assert await result(client, board, "relay", "state") == {"on": True, "pulsing": False}
    await result(client, board, "relay", "off")


def test_inverted_relay_is_on_when_low_and_restore_on(tmp_path):
    out = runner(
        "relay",
        {"out_pin": RELAY, "inverted": True, "restore": "on"},
        [["call", "state", {}], ["call", "off", {}], ["call", "on", {}], ["stop"]],
        tmp_path,
    )
    assert [line.get("result") for line in out[1:]] == [{"on": True, "pulsing": False}, {"on": False}, {"on": True}]
    levels = [line.split()[2] for line in (tmp_path / "pins.log").read_text().splitlines()]
    # off at construction (high), restored on (low), off, on, and off (high) at stop
    assert levels == ["1", "0", "1", "0", "1"]


def test_an_inverted_relay_stays_off_through_boot(tmp_path):
    """boot.py switches outputs off before anything else runs: for an active-low relay that is high."""
    board = start_board(tmp_path, "inv", {"relay": {"out_pin": RELAY, "inverted": True}})
    board.start()
    try:
        board.wait_ready()
        levels = [value for _, pin, value in board.pin_history() if pin == RELAY]
        assert levels and set(levels) == {1}, levels  # high from the first write on: never switched on
    finally:
        board.stop()


async def test_motor_runs_for_its_time_at_its_speed(board, client):
    since = since_now(board)
    answer = await result(client, board, "motor", "run", direction="fwd", seconds=0.5, speed=40)
    assert answer["stopped"] == "elapsed"
    ((on, off),) = high_periods(board.pin_history(), FWD, since)
    assert abs((off - on) - 0.5) < TOLERANCE
    duties = [(t, duty) for t, pin, freq, duty in pwm_log(board.io) if pin == PWM and t >= since]
    assert [d for _, d in duties] == [26214, 0]  # 40 % of 65535, then off
    assert on <= duties[0][0] and duties[1][0] <= off  # power after the direction, off before it
    assert all(freq == 2000 for _, pin, freq, _ in pwm_log(board.io) if pin == PWM)


async def test_motor_reversal_replaces_the_run_and_waits_the_dead_time(board, client):
    since = since_now(board)
    first = asyncio.create_task(result(client, board, "motor", "run", direction="fwd", seconds=5))
    while not board.pin_level(FWD):
        await asyncio.sleep(0.01)
    answer = await result(client, board, "motor", "run", direction="rev", seconds=0.3)
    assert answer["stopped"] == "elapsed" and answer["speed"] == 100
    assert (await first)["stopped"] == "replaced"
    history = board.pin_history()
    ((_, fwd_off),) = high_periods(history, FWD, since)
    ((rev_on, _),) = high_periods(history, REV, since)
    assert rev_on - fwd_off >= 0.49
    assert never_both_high(history, FWD, REV)


async def test_motor_stop_and_refusals(board, client):
    running = asyncio.create_task(result(client, board, "motor", "run", direction="rev", seconds=5))
    while not board.pin_level(REV):
        await asyncio.sleep(0.01)
    assert await result(client, board, "motor", "stop") == {"was_running": True}
    assert board.pin_level(REV) == 0 and (await running)["stopped"] == "stopped"
    code, body = await command(client, board, "motor", "run", direction="fwd", seconds=61)  # max_seconds 60
    assert code == Code.BAD_REQUEST and body["field"] == "params"


def test_motor_without_pwm_refuses_a_lower_speed_and_unsafe_config(tmp_path):
    out = runner(
        "motor",
        {"fwd_pin": FWD, "rev_pin": REV},
        [["call", "run", {"direction": "fwd", "seconds": 0.1, "speed": 50}]],
        tmp_path,
    )
    assert "pwm_pin" in out[1]["error"] and not (tmp_path / "pwm.log").exists()
    assert (tmp_path / "pins.log").read_text().split()[2::3] == ["0", "0"]  # both low, never driven
    for cfg, word in [
        ({"fwd_pin": FWD, "rev_pin": FWD}, "differ"),
        ({"fwd_pin": 36, "rev_pin": REV}, "GPIO 36"),
        ({"fwd_pin": FWD, "rev_pin": REV, "dead_time_ms": 20}, "dead_time_ms"),
    ]:
        out = runner("motor", cfg, [], tmp_path / "bad")
        assert word in out[0]["setup_error"], out
