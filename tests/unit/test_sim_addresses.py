"""Virtual boards' loopback addresses: boards started side by side in threads of one process each get their own
(tests/system/sites started two in a pool and both got 127.0.0.102: the second thread took the first's claim file,
still without its pid, for a stale one)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from pifleet.runtime import runtime_dir
from pifleet.sim import board


def test_boards_started_side_by_side_get_addresses_of_their_own():
    with ThreadPoolExecutor(8) as pool:
        ips = list(pool.map(lambda _: board.free_loopback_ip(5683), range(16)))
    assert len(set(ips)) == 16, ips


def test_a_claim_still_being_written_is_not_taken_over(monkeypatch):
    ip = board.free_loopback_ip(5683)
    path = runtime_dir() / "sim-ips" / ip
    path.write_text("")  # another process has created its claim and not written its pid yet
    monkeypatch.setattr(board, "_claimed_ips", set())  # as seen from that other process
    assert not board._claim(ip)
    os.utime(path, (0, 0))  # ... and one that never wrote it is taken over once old
    assert board._claim(ip)
