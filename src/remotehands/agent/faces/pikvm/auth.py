"""kvmd's authentication: its check chain, its sessions and its login form.

The first credential source present decides, and later ones are never consulted: the
``X-KVMD-User``/``X-KVMD-Passwd`` headers, then the ``auth_token`` cookie, then HTTP Basic.
A malformed user or token is a 400 (``ValidatorError``), a wrong password or an unknown token a
403 (``ForbiddenError``), no credential at all (or an undecodable Basic header) a 401
(``UnauthorizedError``). Basic never asks with ``WWW-Authenticate``, as kvmd does not.

The one user is ``admin`` unless the face's settings name another (``--pikvm-user``); the
password is the agent's, checked by the device's :class:`~remotehands.agent.auth.TokenStore`
(rate limited per client: a client over the limit is refused as a wrong password is).
Sessions live in memory, as kvmd's do: a restart logs everyone out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from starlette.requests import HTTPConnection

from remotehands.agent.auth import TokenStore
from remotehands.agent.faces.pikvm.wire import KvmdError, not_none_string, raise_error, raw_limit
from remotehands.errors import RateLimitedError

__all__ = ["AUTH_COOKIE", "Sessions", "unauthorized", "valid_passwd", "valid_user"]

AUTH_COOKIE: Final = "auth_token"
VERIFIED_TTL_S: Final = 30.0
"""How long a user and password that passed the check are taken as good without checking."""
_USER: Final = re.compile(r"^[a-z_]([a-z0-9@._-]*[a-z0-9_-])?$", re.MULTILINE)
_PASSWD: Final = re.compile(r"^[\x20-\x7e]*\Z", re.MULTILINE)
_TOKEN: Final = re.compile(r"^[0-9a-f]{64}$", re.MULTILINE)


def unauthorized() -> KvmdError:
    """No credential was given (401)."""
    return KvmdError("UnauthorizedError", "Unauthorized", 401)


def forbidden() -> KvmdError:
    """A credential was given and is wrong (403)."""
    return KvmdError("ForbiddenError", "Forbidden", 403)


def valid_user(arg: str | None) -> str:
    """kvmd's user name check (lower case only: ``Admin`` is a 400, not a 403)."""
    raw_limit(arg, 128)
    text = not_none_string(arg, "username characters")
    if _USER.match(text) is None:
        raise raise_error(text, "username characters")
    return text


def valid_passwd(arg: str | None) -> str:
    """Printable ASCII, at most 512 characters; the value is never echoed."""
    raw_limit(arg, 512)
    text = not_none_string(arg, "passwd characters", strip=False)
    if _PASSWD.match(text) is None:
        raise raise_error(text, "passwd characters", hide=True)
    return text


def valid_token(arg: str | None) -> str:
    """64 lower-case hex digits."""
    raw_limit(arg, 128)
    text = not_none_string(arg, "auth token")
    if _TOKEN.match(text) is None:
        raise raise_error(text, "auth token", hide=True)
    return text


@dataclass
class _Session:
    user: str
    expires: float | None


@dataclass
class Sessions:
    """The face's users and sessions: who may sign in, and the tokens handed out."""

    tokens: TokenStore
    user: str = "admin"
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _verified: dict[bytes, float] = field(default_factory=dict)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    async def authorize(self, user: str, passwd: str, client: str) -> bool:
        """Whether ``user`` with ``passwd`` may sign in.

        Clients of kvmd send the password with every request (X-KVMD headers, Basic): a pair
        that passed is remembered (as a keyed digest) for :data:`VERIFIED_TTL_S`, so that a
        busy client does not cost a password check (a worker thread, PAM) per request."""
        digest = hmac.new(self._key, f"{user}\0{passwd}".encode(), hashlib.sha256).digest()
        now = self.clock()
        if self._verified.get(digest, 0.0) > now:
            return True
        if not secrets.compare_digest(user, self.user):
            return False
        try:
            ok = await self.tokens.check_password(passwd, client)
        except RateLimitedError:
            return False
        if ok:
            if len(self._verified) > 64:
                self._verified = {k: t for k, t in self._verified.items() if t > now}
            self._verified[digest] = now + VERIFIED_TTL_S
        return ok

    def login(self, user: str, expire_s: int) -> str:
        """A new session token for ``user`` (``expire_s`` 0: until logout or restart)."""
        token = secrets.token_hex(32)
        expires = self.clock() + expire_s if expire_s > 0 else None
        self._sessions[token] = _Session(user, expires)
        return token

    def user_of(self, token: str) -> str | None:
        """The user of a live session, or ``None``."""
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires is not None and session.expires <= self.clock():
            del self._sessions[token]
            return None
        return session.user

    def logout(self, token: str) -> None:
        """End every session of the token's user, as kvmd does."""
        user = self.user_of(token)
        if user is None:
            return
        for key in [k for k, s in self._sessions.items() if s.user == user]:
            del self._sessions[key]

    async def check(self, conn: HTTPConnection) -> str:
        """Run the check chain on a request or a WebSocket upgrade; answer the user, or raise
        the :class:`KvmdError` kvmd would answer."""
        client = conn.client.host if conn.client else "unknown"
        header_user = conn.headers.get("x-kvmd-user", "")
        if header_user:
            user = valid_user(header_user)
            passwd = valid_passwd(conn.headers.get("x-kvmd-passwd", ""))
            if not await self.authorize(user, passwd, client):
                raise forbidden()
            return user
        cookie = conn.cookies.get(AUTH_COOKIE, "")
        if cookie:
            found = self.user_of(valid_token(cookie))
            if found is None:
                raise forbidden()
            return found
        basic = conn.headers.get("authorization", "")
        if basic[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(basic[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise unauthorized() from None
            parts = decoded.split(":")
            if len(parts) != 2:
                raise unauthorized()
            user = valid_user(parts[0])
            passwd = valid_passwd(parts[1])
            if not await self.authorize(user, passwd, client):
                raise forbidden()
            return user
        raise unauthorized()
