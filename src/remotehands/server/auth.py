"""Who is calling and what they may do: principals, roles, credentials, FastAPI dependencies.

Credentials are random strings with a recognisable prefix, stored only as their SHA-256:

=========  =============================  ==========================================
prefix     what                           table
=========  =============================  ==========================================
``rhs_``   a login session                ``sessions``
``rht_``   an API token                   ``api_tokens``
``ekvent_``  an enrollment token (1 use)  ``enrollment_tokens``
``agt_``   a device's agent credential    ``devices.credential_hash``
=========  =============================  ==========================================

Passwords are hashed with argon2id in a worker thread. Roles are ordered
``viewer < operator < admin < owner``; an API token acts with the lower of its own role and its
user's current role, optionally read-only and limited to devices with some tags.

HTTP routes authenticate with ``Authorization: Bearer ...``; WebSocket routes may pass
``?token=...`` instead (browsers cannot set headers on a WebSocket). A refused WebSocket gets the
same 401/403 JSON answer as HTTP when the ASGI server can send one instead of the handshake
(uvicorn can), or else is closed with code 4401 (unauthorized) or 4403 (forbidden).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, WebSocketException
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import HTTPConnection

from remotehands.errors import AuthError, ForbiddenError, RemoteHandsError, ValidationError
from remotehands.server.db.models import ApiToken, Device, Session, User

if TYPE_CHECKING:
    from remotehands.server.services import Services

__all__ = [
    "AGENT_PREFIX",
    "API_TOKEN_PREFIX",
    "ENROLLMENT_PREFIX",
    "ROLES",
    "SESSION_PREFIX",
    "WS_CLOSE_FORBIDDEN",
    "WS_CLOSE_UNAUTHORIZED",
    "Passwords",
    "Principal",
    "PrincipalCache",
    "Role",
    "WebSocketRefused",
    "authenticate",
    "authenticate_agent",
    "can_act",
    "can_see_device",
    "client_ip",
    "hash_secret",
    "new_secret",
    "normalise_username",
    "request_credential",
    "require_role",
    "require_unrestricted",
    "require_writable",
    "role_rank",
]

logger = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin", "owner")
"""Every role, lowest first."""

Role = Literal["viewer", "operator", "admin", "owner"]

SESSION_PREFIX = "rhs_"
API_TOKEN_PREFIX = "rht_"  # noqa: S105 - a prefix, not a secret
ENROLLMENT_PREFIX = "ekvent_"
AGENT_PREFIX = "agt_"

WS_CLOSE_UNAUTHORIZED = 4401
"""WebSocket close code for missing or bad credentials."""
WS_CLOSE_FORBIDDEN = 4403
"""WebSocket close code for credentials that do not allow the route."""

TOKEN_TOUCH_INTERVAL_S = 60.0
"""``last_used_at`` of an API token is written at most this often."""


USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
"""The shortest password accepted."""


def normalise_username(name: str) -> str:
    """``name`` stripped and lower-cased; raises :class:`ValidationError` unless it is 1-64
    letters, digits and ``_ . @ -``, starting with a letter or digit."""
    value = name.strip().lower()
    if not USERNAME_PATTERN.match(value):
        raise ValidationError(
            f"username {name!r}: 1-64 characters, letters, digits and _ . @ -, starting with a "
            "letter or digit"
        )
    return value


def role_rank(role: str) -> int:
    """The position of ``role`` in :data:`ROLES` (higher may more); -1 for unknown roles."""
    try:
        return ROLES.index(role)
    except ValueError:
        return -1


def new_secret(prefix: str) -> str:
    """A fresh credential: ``prefix`` plus 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a credential is stored (secrets are random enough
    that a slow hash adds nothing)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user through a session, or an API token of a user."""

    kind: Literal["user", "token"]
    user_id: str
    username: str
    role: str
    read_only: bool = False
    tags: list[str] | None = None
    """Devices this principal may reach must have one of these tags; None: every device."""
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this principal: ``alice`` or ``alice/tok_...``."""
        if self.token_id is None:
            return self.username
        return f"{self.username}/{self.token_id}"

    @property
    def rank(self) -> int:
        """:func:`role_rank` of the role."""
        return role_rank(self.role)


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


def client_ip(conn: HTTPConnection) -> str:
    """The caller's address (as the ASGI server reports it, after trusted proxy headers)."""
    return conn.client.host if conn.client is not None else "unknown"


def _services(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def request_credential(conn: HTTPConnection) -> str:
    """The bearer token of a request (or, for a WebSocket, of its ``?token=``); raises
    :class:`AuthError` when there is none."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    if conn.scope["type"] == "websocket":
        token = conn.query_params.get("token")
        if token:
            return token
    raise AuthError(
        "this needs a token: log in with POST /v1/auth/login or create an API token, then send "
        "'Authorization: Bearer <token>'"
    )


class PrincipalCache:
    """Credentials authenticated in the last ``ttl_s`` seconds, so that a burst of requests
    (an AI agent's screenshot-click loop) does not read the database for each one.

    Any change to users, sessions or API tokens made by this process clears it, so a logout,
    a revocation or a disabled user takes effect here at once; another server replica sharing
    the database sees such a change within ``ttl_s``. An entry never outlives the session or
    token it stands for.
    """

    def __init__(
        self, ttl_s: float = 2.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._entries: dict[str, tuple[Principal, float, datetime | None]] = {}

    def get(self, digest: str, now: datetime) -> Principal | None:
        """The cached principal of ``digest``, if still fresh and not expired at ``now``."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, fresh_until, expires_at = entry
        if self._clock() >= fresh_until or (expires_at is not None and expires_at <= now):
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: str, principal: Principal, expires_at: datetime | None) -> None:
        """Remember an authentication for ``ttl_s``."""
        if len(self._entries) >= self._size:
            self._entries.clear()  # a burst of distinct credentials: start over, stay bounded
        self._entries[digest] = (principal, self._clock() + self.ttl_s, expires_at)

    def clear(self) -> None:
        """Forget everything (after any change to users, sessions or tokens)."""
        self._entries.clear()


async def authenticate(services: Services, credential: str) -> Principal:
    """The principal of a session (``rhs_``) or API token (``rht_``); raises
    :class:`AuthError` when it is unknown, expired, revoked, or its user is disabled."""
    now = services.clock()
    digest = hash_secret(credential)
    cached = services.principals.get(digest, now)
    if cached is not None:
        return cached
    async with services.db.session() as db:
        if credential.startswith(SESSION_PREFIX):
            row = (
                await db.execute(
                    select(Session, User)
                    .join(User, User.id == Session.user_id)
                    .where(Session.token_hash == digest)
                )
            ).first()
            if row is None or row.Session.expires_at <= now:
                raise AuthError("session expired or unknown: log in again")
            user = row.User
            _check_enabled(user)
            principal = Principal("user", user.id, user.username, user.role)
            services.principals.put(digest, principal, row.Session.expires_at)
            return principal
        if credential.startswith(API_TOKEN_PREFIX):
            found = (
                await db.execute(
                    select(ApiToken, User)
                    .join(User, User.id == ApiToken.user_id)
                    .where(ApiToken.token_hash == digest)
                )
            ).first()
            if found is None or found.ApiToken.revoked_at is not None:
                raise AuthError("API token revoked or unknown")
            token, user = found.ApiToken, found.User
            if token.expires_at is not None and token.expires_at <= now:
                raise AuthError(f"API token {token.id} expired; create a new one")
            _check_enabled(user)
            if token.last_used_at is None or now - token.last_used_at > timedelta(
                seconds=TOKEN_TOUCH_INTERVAL_S
            ):
                try:
                    await db.execute(
                        update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
                    )
                    await db.commit()
                except SQLAlchemyError:  # bookkeeping only: never refuse a request for it
                    logger.warning("could not record the use of API token %s", token.id)
                    await db.rollback()
            role = min(token.role, user.role, key=role_rank)
            tags = [str(t) for t in token.tags] if token.tags is not None else None
            principal = Principal(
                "token", user.id, user.username, role, token.read_only, tags, token.id
            )
            services.principals.put(digest, principal, token.expires_at)
            return principal
    raise AuthError("unrecognised token: expected a session (rhs_...) or API token (rht_...)")


def _check_enabled(user: User) -> None:
    if user.disabled:
        raise AuthError(f"user {user.username} is disabled")


async def authenticate_agent(services: Services, credential: str) -> Device | None:
    """The device whose agent credential (``agt_...``) this is, or None."""
    if not credential.startswith(AGENT_PREFIX):
        return None
    async with services.db.session() as db:
        device: Device | None = await db.scalar(
            select(Device).where(Device.credential_hash == hash_secret(credential))
        )
        return device


class WebSocketRefused(WebSocketException):
    """A WebSocket refused before it was accepted; :mod:`remotehands.server.http.errors`
    answers it (a 401/403 response, or a 4401/4403 close)."""

    def __init__(self, error: RemoteHandsError) -> None:
        code = WS_CLOSE_UNAUTHORIZED if isinstance(error, AuthError) else WS_CLOSE_FORBIDDEN
        super().__init__(code=code, reason=error.details[:120])
        self.error = error


def require_role(role: str, *, writes: bool = False) -> Any:
    """A FastAPI dependency (``Depends``) that authenticates the caller and returns its
    :class:`Principal`, refusing roles below ``role`` (403) and, when the route ``writes``
    (changes users, tokens or devices), read-only tokens."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    async def dependency(conn: HTTPConnection) -> Principal:
        try:
            principal = await authenticate(_services(conn), request_credential(conn))
            if principal.rank < role_rank(role):
                raise ForbiddenError(
                    f"this needs the {role} role or higher; "
                    f"{principal.username} acts as {principal.role}"
                )
            if writes:
                require_writable(principal)
        except RemoteHandsError as err:
            if conn.scope["type"] == "websocket":
                raise WebSocketRefused(err) from err
            raise
        return principal

    return Depends(dependency)


def require_writable(principal: Principal) -> None:
    """Refuse read-only tokens (:class:`ForbiddenError`)."""
    if principal.read_only:
        raise ForbiddenError("this API token is read-only")


def require_unrestricted(principal: Principal, what: str) -> None:
    """Refuse tag-limited tokens for routes not about devices (users, audit...)."""
    if principal.tags is not None:
        raise ForbiddenError(f"a token limited to tags cannot reach {what}")


def can_act(principal: Principal, access: Literal["read", "control"]) -> None:
    """Raise :class:`ForbiddenError` unless the principal may perform an action of this
    access: viewers and up may ``read``; operators and up, except read-only tokens, may
    ``control``."""
    if access == "read":
        if principal.rank < role_rank("viewer"):
            raise ForbiddenError(f"role {principal.role} may not read devices")
        return
    if principal.rank < role_rank("operator"):
        raise ForbiddenError(
            f"controlling a device needs the operator role or higher; "
            f"{principal.username} acts as {principal.role}"
        )
    if principal.read_only:
        raise ForbiddenError("this API token is read-only: it may not control devices")


def can_see_device(principal: Principal, device_tags: list[str] | None) -> bool:
    """Whether the principal may see a device with these tags (tag-limited tokens see only
    devices that carry one of their tags)."""
    if principal.tags is None:
        return True
    return bool(set(principal.tags) & set(device_tags or ()))


def session_expiry(services: Services) -> datetime:
    """When a session created now expires."""
    return services.clock() + timedelta(seconds=services.settings.session_ttl_s)
