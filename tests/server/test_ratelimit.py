"""The failed-attempt limiter."""

from __future__ import annotations

import pytest

from remotehands.server.ratelimit import RateLimiter, RateLimitExceeded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window() -> None:
    clock = Clock()
    limiter = RateLimiter(3, window_s=60, clock=clock)
    for _ in range(3):
        limiter.check("k")
        limiter.failed("k")
        clock.now += 10
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.check("k")
    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after_s == pytest.approx(30)
    limiter.check("other")
    clock.now += 30  # the first failure leaves the window
    limiter.check("k")


def test_reset() -> None:
    limiter = RateLimiter(1, clock=Clock())
    limiter.failed("k")
    with pytest.raises(RateLimitExceeded):
        limiter.check("k")
    limiter.reset("k")
    limiter.check("k")


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(1, clock=Clock(), max_keys=100)
    for i in range(1000):
        limiter.failed(f"k{i}")
    assert len(limiter._failures) == 100
    limiter.check("k0")  # forgotten first
    with pytest.raises(RateLimitExceeded):
        limiter.check("k999")
