"""Authentication against the database: sessions, API tokens and agent credentials, with a
short-lived cache of recent answers (:class:`PrincipalCache`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from remotehands.errors import AuthError
from remotehands.server.auth.credentials import (
    AGENT_PREFIX,
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    hash_secret,
)
from remotehands.server.auth.principals import Principal, role_rank
from remotehands.server.batch import Batcher
from remotehands.server.db.models import ApiToken, Device, Session, User

if TYPE_CHECKING:
    from remotehands.server.clock import Clock
    from remotehands.server.db.engine import Database

__all__ = ["TOKEN_TOUCH_INTERVAL_S", "Authenticator", "PrincipalCache"]

logger = logging.getLogger(__name__)

TOKEN_TOUCH_INTERVAL_S = 60.0
"""``last_used_at`` of an API token is written at most this often."""


class PrincipalCache:
    """Credentials authenticated in the last ``ttl_s`` seconds, so that a burst of requests
    (an AI agent's screenshot-click loop) does not read the database for each one.

    Any change to users, sessions or API tokens made by this process clears it, so a logout,
    a revocation or a disabled user takes effect here at once; replicas sharing NATS clear
    each other's (:class:`~remotehands.server.cluster.shared.SharedPrincipalCache`), and any
    other process sharing the database sees such a change within ``ttl_s``. An entry never
    outlives the session or token it stands for.
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


_AGENT_BATCH = 500  # credentials per lookup: well under every database's parameter limit


class Authenticator:
    """Credentials to principals (sessions, API tokens) and to devices (agent credentials),
    read from the database through a :class:`PrincipalCache` of recent answers."""

    def __init__(
        self,
        db: Database,
        principals: PrincipalCache,
        *,
        clock: Clock,
        session_ttl_s: float,
        totp_roles: frozenset[str] = frozenset(),
    ) -> None:
        self._db = db
        self._principals = principals
        self._clock = clock
        self._session_ttl_s = session_ttl_s
        self._totp_roles = totp_roles
        self._agents = Batcher(self._agents_by_digest, max_batch=_AGENT_BATCH)
        """Agent credential lookups that arrive together (a restarted server's fleet saying
        hello), made as one query."""

    async def principal(self, credential: str) -> Principal:
        """The principal of a session (``rhs_``) or API token (``rht_``); raises
        :class:`AuthError` when it is unknown, expired, revoked, or its user is disabled."""
        now = self._clock()
        digest = hash_secret(credential)
        cached = self._principals.get(digest, now)
        if cached is not None:
            return cached
        async with self._db.session() as db:
            if credential.startswith(SESSION_PREFIX):
                return await self._session(db, digest, now)
            if credential.startswith(API_TOKEN_PREFIX):
                return await self._api_token(db, digest, now)
        raise AuthError("unrecognised token: expected a session (rhs_...) or API token (rht_...)")

    async def _session(self, db: AsyncSession, digest: str, now: datetime) -> Principal:
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
        missing = user.role in self._totp_roles and not user.totp_enabled
        principal = Principal("user", user.id, user.username, user.role,
                              second_factor_missing=missing)  # fmt: skip
        self._principals.put(digest, principal, row.Session.expires_at)
        return principal

    async def _api_token(self, db: AsyncSession, digest: str, now: datetime) -> Principal:
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
        self._principals.put(digest, principal, token.expires_at)
        return principal

    async def agent(self, credential: str) -> Device | None:
        """The device whose agent credential (``agt_...``) this is, or None. Lookups made
        while another runs are made together, in one query."""
        if not credential.startswith(AGENT_PREFIX):
            return None
        return await self._agents.submit(hash_secret(credential))

    async def _agents_by_digest(self, digests: list[str]) -> list[Device | None]:
        async with self._db.session() as db:
            found = {
                device.credential_hash: device
                for device in await db.scalars(
                    select(Device).where(Device.credential_hash.in_(set(digests)))
                )
            }
        return [found.get(digest) for digest in digests]

    def session_expiry(self) -> datetime:
        """When a session created now expires."""
        return self._clock() + timedelta(seconds=self._session_ttl_s)


def _check_enabled(user: User) -> None:
    if user.disabled:
        raise AuthError(f"user {user.username} is disabled")
