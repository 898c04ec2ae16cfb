"""The netem line `pifleet sim start --netem` and chaos.py take: what tc gets, and what is refused (pure)."""

from __future__ import annotations

import pytest

from pifleet.sim.netns import _drop_bytecode, loss_percent, parse_netem


def test_the_issue_line_goes_to_tc_as_written():
    line = "loss 20% delay 40ms 30ms reorder 5% duplicate 1%"
    assert parse_netem(line) == line.split()
    assert loss_percent(line) == 20.0
    assert loss_percent("delay 40ms") == 0.0


@pytest.mark.parametrize(
    ("line", "word"),
    [("drop 20%", "'drop'"), ("loss", "loss needs a value"), ("delay 40ms; reboot", "'40ms;'")],
)
def test_a_line_tc_would_not_take_is_refused_naming_the_word(line, word):
    with pytest.raises(ValueError, match=word):
        parse_netem(line)


def test_the_loss_filter_drops_the_share_asked():
    # ld [rand]; jge #T: a random u32 at or above T is dropped, so T = (1 - p) * 2^32
    program = _drop_bytecode(30).split(",")
    assert program[0] == "4" and program[2] == f"53 0 1 {round(0.7 * 2**32)}"
