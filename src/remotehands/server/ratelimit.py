"""Limits on failed logins and registrations of the fleet server.

:class:`LoginLimiter` limits failed password checks three ways at once: per client address and
username (a typo-prone user locks out only themselves), per address (one client trying many
usernames) and per username (many addresses guessing one account). The sliding-window counter
itself is :class:`remotehands.ratelimit.RateLimiter`, shared with the agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from remotehands.ratelimit import RateLimiter, RateLimitExceeded

__all__ = ["LoginLimiter", "RateLimitExceeded", "RateLimiter"]


class LoginLimiter:
    """Failed password checks, limited per address and username, per address, per username.

    A success forgets the failures of that address and username pair and of that username,
    never those of the address (a caller with one good account must not clear its address's
    count by logging in between guesses at others).
    """

    def __init__(
        self,
        *,
        per_pair: int,
        per_address: int,
        per_username: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.pair = RateLimiter(per_pair, window_s, clock, max_keys)
        self.address = RateLimiter(per_address, window_s, clock, max_keys)
        self.username = RateLimiter(per_username, window_s, clock, max_keys)

    def check(self, ip: str, username: str, what: str = "logins") -> None:
        """Raise :class:`RateLimitExceeded` when any of the three limits is used up."""
        self.pair.check(f"{ip}|{username}", what)
        self.address.check(ip, f"{what} from this address")
        self.username.check(username, f"{what} for this username")

    def failed(self, ip: str, username: str) -> None:
        """Count one failed check of ``username``'s password from ``ip``."""
        self.pair.failed(f"{ip}|{username}")
        self.address.failed(ip)
        self.username.failed(username)

    def succeeded(self, ip: str, username: str) -> None:
        """Forget the pair's and the username's failures after a good password."""
        self.pair.reset(f"{ip}|{username}")
        self.username.reset(username)
