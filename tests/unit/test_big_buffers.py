"""The master's allocator gives big buffers back (runtime.big_buffers_mapped, called by `pifleet serve`): four
flashes at once, each building megabyte images in a worker thread while smaller pieces of them survive, leave the
process holding what survives, not the threads' heaps around it. In a fresh interpreter: the allocator's state is
the point."""

from __future__ import annotations

import subprocess
import sys

_FLASHES = """
import threading
from pifleet.runtime import big_buffers_mapped

def rss_mb():
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

if not big_buffers_mapped():
    print("not glibc")
    raise SystemExit
before = rss_mb()
freed = bytes(4 << 20)
del freed  # a mapped block freed: what raised glibc's threshold before
kept = []

def flash():
    images = [bytes(3 << 20) + b"x" for _ in range(6)]  # firmware, bundle, their compressed copies
    kept.append([image[: 1 << 20] for image in images])  # smaller survivors between them

threads = [threading.Thread(target=flash) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(round(rss_mb() - before), sum(len(piece) for pieces in kept for piece in pieces) >> 20)
"""


def test_four_flashes_at_once_leave_only_what_they_keep():
    out = subprocess.run([sys.executable, "-c", _FLASHES], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "not glibc":
        return  # another C library's allocator: nothing to set
    grew, kept = (int(x) for x in out.stdout.split())
    assert kept == 24
    assert grew <= kept + 12, f"the process grew {grew} MB for {kept} MB kept (glibc's heaps kept the rest)"
