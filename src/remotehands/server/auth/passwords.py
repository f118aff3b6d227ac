"""Passwords: argon2id hashing in worker threads, a few at a time, off the event loop.

Each check costs tens of milliseconds of a core and tens of MiB of memory on purpose; a crowd of
wrong logins must not take every core (and every thread of the default executor) from the rest
of the server. So at most ``max_concurrent`` hashes run at once, at most ``max_waiting`` more
wait for their turn, and past that a check is refused at once as busy (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from remotehands.ratelimit import RateLimitExceeded

__all__ = ["MAX_CONCURRENT_HASHES", "MAX_WAITING_HASHES", "MIN_PASSWORD", "Passwords"]

T = TypeVar("T")

MIN_PASSWORD = 8
"""The shortest password accepted."""
MAX_CONCURRENT_HASHES = 2
"""argon2 computations running at once (a core each)."""
MAX_WAITING_HASHES = 64
"""Password checks waiting for their turn before more are refused as busy."""


class Passwords:
    """argon2id hashing off the event loop, bounded; pass a cheaper ``PasswordHasher`` (or one
    that records its calls) in tests."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        max_concurrent: int = MAX_CONCURRENT_HASHES,
        max_waiting: int = MAX_WAITING_HASHES,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
        self._max_concurrent = max_concurrent
        self._max_waiting = max_waiting
        self._slots: asyncio.Semaphore | None = None
        self._queued = 0

    async def _run(self, func: Callable[..., T], *args: str) -> T:
        if self._slots is None:  # made in the running loop (a loop per app in tests)
            self._slots = asyncio.Semaphore(self._max_concurrent)
        if self._queued >= self._max_concurrent + self._max_waiting:
            raise RateLimitExceeded(
                "the server is busy checking other passwords; try again in a second", 1.0
            )
        self._queued += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(func, *args)
        finally:
            self._queued -= 1

    async def hash(self, password: str) -> str:
        """The argon2 hash of ``password``."""
        return str(await self._run(self._hasher.hash, password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with ``password_hash`` None (an unknown user) a dummy
        hash is checked all the same, so that timing does not reveal which users exist."""
        if password_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            await self._run(self._check, self._dummy, password)
            return False
        return await self._run(self._check, password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False
