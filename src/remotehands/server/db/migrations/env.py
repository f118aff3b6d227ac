"""Alembic environment of the fleet server.

The server calls Alembic with an open connection in ``config.attributes["connection"]``
(see :meth:`remotehands.server.db.engine.Database.migrate`). Run by hand, it connects to
``REMOTEHANDS_DATABASE_URL`` (or the settings' default SQLite file).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from remotehands.server.db.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    from remotehands.server.settings import ServerSettings

    engine = create_async_engine(ServerSettings.load().db_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    """Entry point Alembic calls when it loads this file."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    elif context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"))
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_standalone())


main()
