"""First start: create the database and its one owner (``remotehands server init``)."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from remotehands.errors import ConfigError, RemoteHandsError
from remotehands.private import private_dir
from remotehands.server.auth import MIN_PASSWORD, Passwords, normalise_username
from remotehands.server.db.engine import Database, safe_url
from remotehands.server.db.models import User, new_id
from remotehands.server.settings import ServerSettings

__all__ = ["InitResult", "initialise"]


@dataclass(frozen=True)
class InitResult:
    """What :func:`initialise` did."""

    created: bool
    """False when an owner existed already (nothing was changed)."""
    owner: str
    password: str | None
    """The generated password (shown once), or None when it was given or nothing was created."""
    database: str
    """The database URL, password hidden."""


async def initialise(
    settings: ServerSettings,
    owner: str = "owner",
    password: str | None = None,
    passwords: Passwords | None = None,
) -> InitResult:
    """Create (or migrate) the database and, unless one exists, the owner ``owner`` with
    ``password`` (a random one, returned, when None)."""
    try:
        username = normalise_username(owner)
    except RemoteHandsError as err:
        raise ConfigError(err.details) from err
    if password is not None and len(password) < MIN_PASSWORD:
        raise ConfigError(f"the owner's password must have at least {MIN_PASSWORD} characters")
    created = not settings.data_dir.exists()
    try:
        private_dir(settings.data_dir)
    except OSError as err:
        raise ConfigError(
            f"cannot create the data directory {settings.data_dir}: {err.strerror}; choose "
            "another --data, or let the user running the server write there"
        ) from err
    try:
        return await _initialise(settings, username, password, passwords)
    except BaseException:
        if created:  # nothing half-created: a database that cannot be reached leaves no trace
            shutil.rmtree(settings.data_dir, ignore_errors=True)
        raise


async def _initialise(
    settings: ServerSettings, username: str, password: str | None, passwords: Passwords | None
) -> InitResult:
    database = safe_url(settings.db_url)
    async with await Database.open(settings.db_url) as db:
        async with db.session() as session:
            existing = await session.scalar(select(User).where(User.role == "owner").limit(1))
        if existing is not None:
            return InitResult(False, existing.username, None, database)
        generated = None
        if password is None:
            password = generated = secrets.token_urlsafe(15)
        password_hash = await (passwords or Passwords()).hash(password)
        async with db.session() as session:
            session.add(
                User(
                    id=new_id("usr"),
                    username=username,
                    password_hash=password_hash,
                    role="owner",
                    created_at=datetime.now(UTC),
                    disabled=False,
                )
            )
            try:
                await session.commit()
            except IntegrityError as err:
                raise ConfigError(
                    f"a user named {username} exists already; choose another --owner"
                ) from err
    return InitResult(True, username, generated, database)
