"""The database handle: an async engine, sessions, and migrations to the newest schema.

SQLite (the default) runs in WAL mode with a busy timeout, so concurrent writers wait for each
other instead of failing; PostgreSQL is reached through asyncpg. Foreign errors met while opening
(an unreachable server, a read-only directory) become :class:`~remotehands.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from remotehands.errors import ConfigError
from remotehands.private import private_file

__all__ = ["MIGRATIONS_DIR", "Database"]

_HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = _HERE / "migrations"
"""The Alembic scripts, shipped inside the package."""

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another one before giving up."""

OPEN_TIMEOUT_S = 30.0
"""How long opening and migrating the database may take before it counts as unreachable."""


_MIGRATION_LOCK_ID = 0x72656D6F7465  # "remote": any constant shared by every replica


def safe_url(url: str) -> str:
    """``url`` with its password hidden, fit for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _json_text(value: Any) -> str:
    """A JSON column's text: orjson's (several times faster than the standard library's on the
    audit log's hot path), the standard library's for what orjson refuses (keys that are not
    strings, integers over 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


class Database:
    """An async engine plus a session factory; an async context manager that disposes it.

    Use :meth:`session` for a unit of work: it commits nothing by itself (call
    ``await session.commit()``) and rolls back whatever is left open when it exits.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"pool_pre_ping": self.dialect != "sqlite"}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                # the database is private whatever the umask; SQLite gives its -wal and -shm
                # files the database file's mode
                private_file(Path(database))
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        self.engine: AsyncEngine = create_async_engine(url, json_serializer=_json_text, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Self:
        """A database at ``url`` (an async SQLAlchemy URL), migrated to the newest schema.

        Raises :class:`ConfigError` when it cannot be reached or migrated.
        """
        try:
            database = cls(url)
        except (SQLAlchemyError, OSError, ValueError) as err:
            raise ConfigError(f"cannot open database {safe_url(url)}: {err}") from err
        if migrate:
            try:
                await database.migrate()
            except BaseException:
                await database.close()
                raise
        return database

    async def migrate(self) -> None:
        """Bring the schema to Alembic's head revision (idempotent)."""
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S), self.engine.begin() as connection:
                await connection.run_sync(_upgrade_to_head)
        except TimeoutError as err:
            raise ConfigError(
                f"database {safe_url(self.url)} did not answer within {OPEN_TIMEOUT_S:.0f} s"
            ) from err
        except (SQLAlchemyError, OSError) as err:
            raise ConfigError(f"cannot open database {safe_url(self.url)}: {err}") from err

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for one unit of work."""
        async with self._sessions() as session:
            yield session

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def alembic_config() -> Config:
    """The Alembic configuration of the packaged migrations."""
    config = Config(str(_HERE / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade_to_head(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together must not migrate at the same time; the lock ends with
        # the transaction.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
