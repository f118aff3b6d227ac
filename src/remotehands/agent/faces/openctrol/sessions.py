"""Desktop sessions of the Openctrol face: who may open ``/ws/desktop``, until when, and how
often a client may fail to prove it.

A session is created for a Home Assistant id (``ha_id``) with a time to live clamped to
60-3600 s, as the reference does; it carries a random token, kept only as its SHA-256 digest.
Ending a session, or its expiry, closes every socket opened with it. Failed key and token
checks are counted per client: the sixth failure within a minute is refused without checking,
until the oldest failure is a minute old.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "DEFAULT_TTL_S",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "DesktopSession",
    "FailureLimiter",
    "SessionBroker",
    "clamp_ttl",
]

MIN_TTL_S = 60
MAX_TTL_S = 3600
DEFAULT_TTL_S = 900


def clamp_ttl(ttl_s: int) -> int:
    """The reference's clamp: 60 <= ttl <= 3600 seconds."""
    return max(MIN_TTL_S, min(MAX_TTL_S, ttl_s))


@dataclass(eq=False)
class DesktopSession:
    """One desktop session: its id, the HA id it was issued to and when it expires."""

    id: str
    ha_id: str
    expires_at: datetime
    token_digest: bytes
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the session is ended (its sockets close)."""
    sockets: int = 0
    """The ``/ws/desktop`` sockets open with this session."""


class SessionBroker:
    """The face's desktop sessions. ``clock`` answers aware UTC datetimes (injected in tests)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._sessions: dict[str, DesktopSession] = {}

    def create(self, ha_id: str, ttl_s: int) -> tuple[DesktopSession, str]:
        """A new session of ``ha_id`` living ``ttl_s`` (clamped) and its token."""
        self._drop_expired()
        token = secrets.token_urlsafe(32)
        session = DesktopSession(
            id=str(uuid.uuid4()),
            ha_id=ha_id,
            expires_at=self.clock() + timedelta(seconds=clamp_ttl(ttl_s)),
            token_digest=hashlib.sha256(token.encode()).digest(),
        )
        self._sessions[session.id] = session
        return session, token

    def get(self, session_id: str) -> DesktopSession | None:
        """The live session ``session_id``; ``None`` when unknown, ended or expired."""
        session = self._sessions.get(session_id)
        if session is None or self.expired(session):
            return None
        return session

    def check_token(self, session_id: str, token: str) -> DesktopSession | None:
        """The live session ``session_id`` if ``token`` is its token, else ``None``."""
        session = self.get(session_id)
        digest = hashlib.sha256(token.encode()).digest()
        if session is None or not hmac.compare_digest(session.token_digest, digest):
            return None
        return session

    def expired(self, session: DesktopSession) -> bool:
        """Whether ``session`` has ended or outlived its time."""
        return session.ended.is_set() or session.expires_at <= self.clock()

    def remaining_s(self, session: DesktopSession) -> float:
        """Seconds ``session`` has left (0 once expired)."""
        return max(0.0, (session.expires_at - self.clock()).total_seconds())

    def end(self, session_id: str) -> bool:
        """End a session and close its sockets; ``False`` when there is no such live session."""
        session = self._sessions.pop(session_id, None)
        if session is None or self.expired(session):
            return False
        session.ended.set()
        return True

    def active(self) -> int:
        """How many sessions are live."""
        self._drop_expired()
        return len(self._sessions)

    def _drop_expired(self) -> None:
        for session in [s for s in self._sessions.values() if self.expired(s)]:
            session.ended.set()
            del self._sessions[session.id]


class FailureLimiter:
    """Failed key or token checks per client: at most ``limit`` in ``window_s`` seconds."""

    def __init__(
        self,
        limit: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked_for(self, client: str) -> float:
        """Seconds ``client`` must wait before its next check (0: it may try now)."""
        now = self.clock()
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window_s - now

    def failed(self, client: str) -> None:
        """Count one failure of ``client``."""
        self._failures[client].append(self.clock())
