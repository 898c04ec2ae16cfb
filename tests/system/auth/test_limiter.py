"""Login rate limits, without a master: failures per key in a sliding window."""

from __future__ import annotations

from pifleet.auth.limiter import LoginLimiter


def test_five_failures_in_the_window_block_until_the_oldest_leaves_it():
    now = [1000.0]
    limiter = LoginLimiter(failures=5, window_s=900, clock=lambda: now[0])
    ip, name = ("address", "10.0.0.9"), ("name", "alice")
    for i in range(5):
        assert limiter.retry_after(ip, name) == 0
        limiter.failed(ip, name)
        now[0] += 10
    assert limiter.retry_after(ip, name) == 850  # the first failure (t=1000) leaves the window at 1900
    assert limiter.retry_after(("name", "bob"), ip) == 850  # the address alone is enough
    assert limiter.retry_after(("address", "10.0.0.8"), name) == 850  # so is the name
    assert limiter.retry_after(("address", "10.0.0.8"), ("name", "bob")) == 0
    now[0] = 1901
    assert limiter.retry_after(ip, name) == 0


def test_a_success_resets_its_keys():
    limiter = LoginLimiter(failures=3, window_s=60)
    keys = (("address", "a"), ("name", "n"))
    for _ in range(2):
        limiter.failed(*keys)
    limiter.succeeded(*keys)
    for _ in range(2):
        limiter.failed(*keys)
    assert limiter.retry_after(*keys) == 0
    limiter.failed(*keys)
    assert limiter.retry_after(*keys) > 0
