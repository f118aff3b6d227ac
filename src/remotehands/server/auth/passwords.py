"""Passwords: argon2id hashing in a worker thread, so that the event loop never waits on it."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MIN_PASSWORD", "Passwords"]

MIN_PASSWORD = 8
"""The shortest password accepted."""


class Passwords:
    """argon2id hashing off the event loop; pass a cheaper ``PasswordHasher`` in tests."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """The argon2 hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with ``password_hash`` None (an unknown user) a dummy
        hash is checked all the same, so that timing does not reveal which users exist."""
        if password_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            password_hash = self._dummy
            await asyncio.to_thread(self._check, password_hash, password)
            return False
        return await asyncio.to_thread(self._check, password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False
