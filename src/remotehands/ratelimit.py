"""Limits on failed attempts (logins, agent registrations), per key, in a sliding window.

Counts live in this process. Server replicas sharing NATS count every replica's failures
(:mod:`remotehands.server.cluster.shared`); without it each process limits on its own. The
fleet server and the agent's faces both limit with it; its tables are capped, so a flood of
distinct keys costs bounded memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from remotehands.errors import RateLimitedError

__all__ = ["RateLimitExceeded", "RateLimiter"]


class RateLimitExceeded(RateLimitedError):
    """:class:`RateLimitedError` that knows when to retry (the ``Retry-After`` header)."""

    def __init__(self, details: str, retry_after_s: float) -> None:
        super().__init__(details)
        self.retry_after_s = retry_after_s


class RateLimiter:
    """At most ``limit`` failures per key within ``window_s`` seconds.

    ``clock`` returns seconds (monotonic or wall time); tests pass a fake one. At most
    ``max_keys`` keys are tracked: the least recently failing ones are forgotten first, so a flood
    of distinct keys costs bounded memory.
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def check(self, key: str, what: str = "attempts") -> None:
        """Raise :class:`RateLimitExceeded` when ``key`` used up its failures."""
        now = self._clock()
        failures = self._recent(key, now)
        if failures is not None and len(failures) >= self.limit:
            retry_after = max(1.0, failures[0] + self.window_s - now)
            raise RateLimitExceeded(
                f"too many failed {what}; try again in {math.ceil(retry_after)} s",
                retry_after,
            )

    def failed(self, key: str) -> None:
        """Count one failure for ``key``."""
        now = self._clock()
        failures = self._recent(key, now)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self.limit)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now)

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (after a success)."""
        self._failures.pop(key, None)
