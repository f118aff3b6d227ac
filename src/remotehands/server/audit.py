"""The audit log: who did what to which device, with what result and how long it took.

:meth:`AuditLog.record` never raises into its caller (an action that worked must not fail because
its audit row could not be written; the failure is logged instead), and it never stores
secrets: keys such as ``password`` or ``token`` are removed from the parameters, credentials
recognisable by their prefix are masked wherever they appear, and so are the values of
``Authorization``-like header strings.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select

from remotehands.server.db.engine import Database
from remotehands.server.db.models import AuditEntry

__all__ = ["ACTOR_KINDS", "AuditLog", "redact"]

logger = logging.getLogger(__name__)

ACTOR_KINDS = ("user", "token", "agent", "system")

RECORD_TIMEOUT_S = 10.0
"""The longest writing one audit row may take before it is given up (and logged)."""

REDACTED = "[redacted]"

_SECRET_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "token",
        "auth_token",
        "enrollment_token",
        "access_token",
        "refresh_token",
        "secret",
        "client_secret",
        "authorization",
        "proxy_authorization",
        "cookie",
        "credential",
        "credentials",
        "api_key",
        "x_api_key",
    }
)
_SECRET_KEY_PARTS = ("password", "secret", "passphrase")
_CREDENTIAL = re.compile(r"\b(rhs|rht|agt|ekvent)_[A-Za-z0-9_\-]{8,}")
_SECRET_HEADER = re.compile(
    r"^\s*(authorization|proxy-authorization|cookie|x-api-key|x-auth-token)\s*:", re.IGNORECASE
)


def _is_secret_key(key: str) -> bool:
    normal = key.strip().lower().replace("-", "_")
    return normal in _SECRET_KEYS or any(part in normal for part in _SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """``value`` with secret keys removed and credential-like strings masked (a copy)."""
    if isinstance(value, dict):
        return {str(k): redact(v) for k, v in value.items() if not _is_secret_key(str(k))}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        header = _SECRET_HEADER.match(value)
        if header:
            return f"{header.group(1)}: {REDACTED}"
        return _CREDENTIAL.sub(lambda m: f"{m.group(1)}_{REDACTED}", value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


class AuditLog:
    """Writes and reads the ``audit`` table."""

    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))

    async def record(
        self,
        *,
        actor: str,
        actor_kind: str,
        action: str,
        device_id: str | None = None,
        params: dict[str, Any] | None = None,
        result: str = "ok",
        duration_ms: float = 0.0,
        details: str | None = None,
    ) -> None:
        """Append one entry; logs and swallows any failure (see the module docstring)."""
        try:
            entry = AuditEntry(
                at=self._clock(),
                actor=actor[:128],
                actor_kind=actor_kind,
                device_id=device_id,
                action=action[:64],
                params=redact(params) if params is not None else None,
                result=result[:32],
                duration_ms=float(duration_ms),
                details=redact(details) if details is not None else None,
            )
            async with asyncio.timeout(RECORD_TIMEOUT_S), self._db.session() as session:
                session.add(entry)
                await session.commit()
        except Exception:
            logger.exception("could not write the audit entry %s by %s", action, actor)

    async def query(
        self,
        *,
        device_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, newest first.

        ``actor`` matches a user's own entries and those of the user's API tokens (recorded as
        ``user/tok_...``); ``since`` is inclusive, ``until`` exclusive.
        """
        statement = select(AuditEntry)
        if device_id is not None:
            statement = statement.where(AuditEntry.device_id == device_id)
        if actor is not None:
            escaped = actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(
                or_(AuditEntry.actor == actor, AuditEntry.actor.like(f"{escaped}/%", escape="\\"))
            )
        if action is not None:
            statement = statement.where(AuditEntry.action == action)
        if result is not None:
            statement = statement.where(AuditEntry.result == result)
        if since is not None:
            statement = statement.where(AuditEntry.at >= since)
        if until is not None:
            statement = statement.where(AuditEntry.at < until)
        statement = statement.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
        async with self._db.session() as session:
            return list((await session.scalars(statement)).all())
