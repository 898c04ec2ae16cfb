"""The netem line `pifleet sim start --netem` and chaos.py take: what tc gets, and what is refused (pure)."""

from __future__ import annotations

import pytest

from pifleet.sim.impair import Impairment, UnsupportedImpairment, _no_udp_checksum
from pifleet.sim.netns import parse_netem


def test_the_issue_line_goes_to_tc_as_written():
    line = "loss 20% delay 40ms 30ms reorder 5% duplicate 1%"
    assert parse_netem(line) == line.split()


def test_the_issue_line_in_user_space():
    impairment = Impairment.from_args(parse_netem("loss 20% delay 40ms 30ms reorder 5% duplicate 1%"))
    assert impairment == Impairment(loss=0.2, delay_s=0.04, jitter_s=0.03, reorder=0.05, duplicate=0.01)
    assert impairment.words() == "loss 20% delay 40ms 30ms reorder 5% duplicate 1%"
    assert Impairment.from_args(parse_netem("delay 1s")).delay_s == 1.0
    with pytest.raises(UnsupportedImpairment, match="'rate'"):
        Impairment.from_args(parse_netem("loss 1% rate 1mbit"))


@pytest.mark.parametrize(
    ("line", "word"),
    [("drop 20%", "'drop'"), ("loss", "loss needs a value"), ("delay 40ms; reboot", "'40ms;'")],
)
def test_a_line_tc_would_not_take_is_refused_naming_the_word(line, word):
    with pytest.raises(ValueError, match=word):
        parse_netem(line)


def test_a_udp_datagram_passes_the_relay_without_its_checksum_and_anything_else_as_it_is():
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0]) + bytes([10, 231, 1, 1, 10, 231, 1, 2])
    udp = b"\x16\x33\x16\x33\x00\x0c\xab\xcd" + b"coap"
    assert _no_udp_checksum(eth + ip + udp) == eth + ip + udp[:6] + b"\0\0" + b"coap"
    arp = b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)
    assert _no_udp_checksum(arp) == arp
    tcp = eth + ip[:9] + b"\x06" + ip[10:] + bytes(20)
    assert _no_udp_checksum(tcp) == tcp
