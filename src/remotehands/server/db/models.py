"""The fleet server's tables (SQLAlchemy 2 declarative, typed).

Every time column holds an aware UTC datetime on both backends: PostgreSQL stores
``timestamptz``; SQLite has no time zones, so :class:`UTCDateTime` stores naive UTC and gives it
its zone back on the way out. Secrets (passwords, session and API tokens, enrollment tokens,
agent credentials) are only ever stored hashed.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Device",
    "EnrollmentToken",
    "Session",
    "UTCDateTime",
    "User",
    "new_id",
]


def new_id(kind: str) -> str:
    """A fresh row id such as ``dev_3f2a9c1b7e5d4a60`` (``kind`` is ``dev``, ``usr``, ...)."""
    return f"{kind}_{secrets.token_hex(8)}"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend; naive values are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the server's tables."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class User(Base):
    """A person who logs in; ``role`` is one of owner, admin, operator, viewer."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    """The base32 TOTP secret, set when enrolling a second factor."""
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether logging in needs a TOTP code (set once a code confirmed the secret)."""
    totp_recovery: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, default=None)
    """SHA-256 hashes of the unused recovery codes."""


class Session(Base):
    """A login session; the bearer token is ``rhs_...``, stored as its SHA-256."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """An API token (``rht_...``) for automation, at most its creator's role."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class EnrollmentToken(Base):
    """A single-use token (``ekvent_...``) with which one agent registers one device."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    suggested_name: Mapped[str | None] = mapped_column(String(128))
    suggested_tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    device_id: Mapped[str | None] = mapped_column(String(40))


class Device(Base):
    """A device of the fleet, as its agent last described it."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="offline", index=True)
    device_type: Mapped[str | None] = mapped_column(String(64))
    driver: Mapped[str | None] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[datetime | None]
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    capabilities: Mapped[list[Any]] = mapped_column(JSON, default=list)
    screens: Mapped[list[Any]] = mapped_column(JSON, default=list)
    hardware_id: Mapped[str | None] = mapped_column(String(256))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class AuditEntry(Base):
    """One audited action: who did what to which device, the result, how long it took."""

    __tablename__ = "audit"

    # BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[str] = mapped_column(String(32))
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    details: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    """The :attr:`hash` of the entry before this one in the chain."""
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    """SHA-256 over this entry's fields and :attr:`prev_hash` (see remotehands.server.audit)."""
