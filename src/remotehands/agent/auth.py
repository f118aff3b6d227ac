"""Authentication of the agent's local faces: one password, expiring bearer tokens.

The password comes from ``REMOTEHANDS_AGENT_PASSWORD``, from a file, or is the Unix password of
the user running the agent (PAM), as desktopkit does. Tokens are random, kept only as SHA-256
digests, and expire. Failed logins are rate limited per client address and in all (one
password guarded by many addresses), in capped tables; the client address is the socket's peer
unless the operator named trusted proxies (``--trusted-proxy``).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import hmac
import logging
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from remotehands.errors import AuthError, ConfigError
from remotehands.ratelimit import RateLimiter

__all__ = ["TokenStore", "password_check"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Static:
    digest: bytes

    def __call__(self, candidate: str) -> bool:
        return hmac.compare_digest(self.digest, hashlib.sha256(candidate.encode()).digest())


class _Pam:
    """Checks a Unix user's password through PAM (the user running the agent by default)."""

    def __init__(self, user: str | None = None) -> None:
        try:
            import pam
        except ImportError as err:
            raise ConfigError(
                "PAM login needs the python-pam package: install remotehands[agent]"
            ) from err
        self._pam = pam
        self.user = user or getpass.getuser()

    def __call__(self, candidate: str) -> bool:
        # a PAM handle per check: they are not safe to share between threads
        return bool(self._pam.pam().authenticate(self.user, candidate))


def password_check(
    *, password: str | None, password_file: Path | None, pam: bool, pam_user: str | None = None
) -> Callable[[str], bool]:
    """Build the password check from the first source configured; refuse to start without one."""
    if password:
        return _Static(hashlib.sha256(password.encode()).digest())
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8").strip()
            mode = password_file.stat().st_mode
        except OSError as err:
            raise ConfigError(f"cannot read the password file {password_file}: {err}") from err
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("the password file %s can be read by other users: chmod 600 it",
                        password_file)  # fmt: skip
        if not text:
            raise ConfigError(f"the password file {password_file} is empty")
        return _Static(hashlib.sha256(text.encode()).digest())
    if pam:
        return _Pam(pam_user)
    raise ConfigError(
        "no password for the agent's API: set REMOTEHANDS_AGENT_PASSWORD, pass "
        "--password-file FILE, or --pam to use the Unix password of the user running the agent"
    )


class TokenStore:
    """Bearer tokens of the native face, hashed, with a time to live."""

    def __init__(
        self,
        check: Callable[[str], bool],
        *,
        ttl_s: int = 28_800,
        max_failures: int = 10,
        max_total_failures: int = 100,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self._check = check
        self.ttl_s = ttl_s
        self._tokens: dict[bytes, float] = {}
        self._per_client = RateLimiter(max_failures, window_s, clock, max_keys=max_clients)
        self._in_all = RateLimiter(max_total_failures, window_s, clock, max_keys=1)
        self._clock = clock

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    async def check_password(self, password: str, client: str) -> bool:
        """Whether ``password`` is the device's, with failures rate limited per client and in
        all as for :meth:`login`, and no token issued: for faces whose clients send the
        password with every request (PiKVM's ``X-KVMD-Passwd``, HTTP Basic).

        Raises :class:`RateLimitedError` while ``client`` (or every client) failed too often."""
        self._per_client.check(client, f"logins from {client}")
        self._in_all.check("*", "logins from all clients")
        ok = await asyncio.to_thread(self._check, password)
        if not ok:
            self._per_client.failed(client)
            self._in_all.failed("*")
            return False
        self._per_client.reset(client)
        return True

    async def login(self, password: str, client: str) -> tuple[str, int]:
        """Check the password and answer a new token and its lifetime in seconds."""
        if not await self.check_password(password, client):
            raise AuthError("wrong password")
        now = self._clock()
        self._expire(now)
        token = "rha_" + secrets.token_urlsafe(32)
        self._tokens[self._digest(token)] = now + self.ttl_s
        return token, self.ttl_s

    def _expire(self, now: float) -> None:
        for key in [k for k, exp in self._tokens.items() if exp <= now]:
            del self._tokens[key]

    def remaining(self, token: str) -> float:
        """Seconds the token has left; raises :class:`AuthError` when unknown or expired."""
        expires = self._tokens.get(self._digest(token))
        now = self._clock()
        if expires is None or expires <= now:
            raise AuthError("the token is unknown or expired: log in again at POST /auth/login")
        return expires - now

    def logout(self, token: str) -> None:
        """Forget a token."""
        self._tokens.pop(self._digest(token), None)
