"""A board's link impaired as the chaos run's netem line asks (loss, delay with jitter, reordering, duplication), on a
kernel without sch_netem too: datagrams echoed from inside a namespace come back late, out of order, twice and
not at all, in the shares asked (sim/impair.py, sim/netns.py)."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

import pytest

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""
SENT = 300
GAP_S = 0.01
LINE = "loss 10% delay 40ms 30ms reorder 5% duplicate 10%"


def test_datagrams_over_the_link_come_late_out_of_order_twice_and_not_at_all(lan):
    link = lan.add()
    how = link.impair(LINE)
    print(f"link {link.name}: {how}")
    echo = subprocess.Popen(
        [*link.exec_prefix(), sys.executable, "-c", ECHO, link.ip], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(echo.stdout.readline())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((lan.host_ip, 0))
            sock.settimeout(0.001)
            sent, got = {}, []  # number -> when sent; (number, round trip) in the order they came back
            start = time.monotonic()
            deadline = start + SENT * GAP_S + 1.0
            n = 0
            while time.monotonic() < deadline:
                if n < SENT and time.monotonic() >= start + n * GAP_S:
                    sent[n] = time.monotonic()
                    sock.sendto(str(n).encode(), (link.ip, port))
                    n += 1
                try:
                    data, _ = sock.recvfrom(64)
                except TimeoutError:
                    continue
                number = int(data)
                got.append((number, time.monotonic() - sent[number]))
    finally:
        echo.kill()
        echo.wait()
    answered = {number for number, _ in got}
    round_trips = sorted(rtt for _, rtt in got)
    duplicates = len(got) - len(answered)
    out_of_order = sum(1 for (a, _), (b, _) in zip(got, got[1:]) if b < a)
    print(
        f"{len(answered)} of {SENT} answered, {duplicates} twice or more, {out_of_order} out of order; round trip "
        f"median {statistics.median(round_trips) * 1000:.0f} ms, {round_trips[0] * 1000:.0f}-"
        f"{round_trips[-1] * 1000:.0f} ms; relay {lan.relay().counts if link.relayed else '(kernel netem)'}"
    )
    # loss 10 % each way: 81 % of the round trips (sd 2.3 %)
    assert 0.70 * SENT <= len(answered) <= 0.92 * SENT
    # 40 ± 30 ms each way: a round trip of 80 ms at the median, at least 20 ms but for the 5 % sent at once
    assert 0.060 <= statistics.median(round_trips) <= 0.110
    assert sum(1 for rtt in round_trips if rtt < 0.019) <= 0.25 * len(round_trips)
    assert round_trips[-1] <= 0.140 + 0.100  # 70 ms each way at most, and the host's own delays
    # duplicate 10 % each way: about 19 % of the answered ones come back twice or more
    assert 0.08 * len(answered) <= duplicates <= 0.32 * len(answered)
    # 10 ms apart with ± 30 ms of jitter: many overtake each other
    assert out_of_order >= 0.1 * len(got)
    if link.relayed:
        counts = lan.relay().counts
        assert counts["lost"] > 0 and counts["duplicated"] > 0 and counts["reordered"] > 0, counts


def test_a_line_the_link_cannot_apply_is_refused_naming_the_word(lan):
    from pifleet.sim.netns import NetemError

    link = lan.add()
    try:
        how = link.impair("loss 1% rate 1mbit")
    except NetemError as exc:
        assert "'rate'" in str(exc)
    else:
        assert "netem" in how  # a kernel with sch_netem applies it as written
        pytest.skip("this kernel has sch_netem: the user-space relay is not used")
