"""The database: migrations on both backends, aware UTC times, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from remotehands.errors import ConfigError
from remotehands.server.db.engine import Database, safe_url
from remotehands.server.db.models import AuditEntry, Device, new_id

pytestmark = pytest.mark.anyio

TABLES = {"users", "sessions", "api_tokens", "enrollment_tokens", "devices", "audit"}


async def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        await db.migrate()  # a second run changes nothing
        async with db.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables >= TABLES | {"alembic_version"}


async def test_times_are_aware_utc(database_url: str) -> None:
    at = datetime(2026, 4, 15, 16, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    async with await Database.open(database_url) as db:
        async with db.session() as session:
            session.add(
                AuditEntry(
                    at=at,
                    actor="a",
                    actor_kind="system",
                    action="x",
                    result="ok",
                    duration_ms=0,
                )
            )
            await session.commit()
        async with db.session() as session:
            stored = await session.scalar(select(AuditEntry.at))
            later = await session.scalar(
                select(AuditEntry.id).where(AuditEntry.at > at - timedelta(microseconds=1))
            )
    assert stored == at
    assert stored is not None and stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert later is not None


async def test_naive_times_are_refused(database_url: str) -> None:
    async with await Database.open(database_url) as db, db.session() as session:
        session.add(
            Device(
                id=new_id("dev"),
                name="n",
                tags=[],
                status="offline",
                capabilities=[],
                screens=[],
                credential_hash="h",
                created_at=datetime(2026, 1, 1),  # naive
            )
        )
        with pytest.raises(Exception, match="naive datetime"):
            await session.commit()


async def test_json_columns_round_trip(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        async with db.session() as session:
            session.add(
                Device(
                    id="dev_1",
                    name="n",
                    tags=["a", "b"],
                    status="online",
                    health={"uptime_seconds": 1.5, "cpu_percent": 2, "memory_percent": 3},
                    capabilities=["screen"],
                    screens=[{"id": 0, "width": 10, "height": 10}],
                    credential_hash="h",
                    created_at=datetime.now(UTC),
                )
            )
            await session.commit()
        async with db.session() as session:
            device = await session.get(Device, "dev_1")
    assert device is not None
    assert device.tags == ["a", "b"]
    assert device.health == {"uptime_seconds": 1.5, "cpu_percent": 2, "memory_percent": 3}
    assert device.screens == [{"id": 0, "width": 10, "height": 10}]


async def test_unreachable_postgres_is_a_config_error() -> None:
    url = "postgresql+asyncpg://u:hidden@127.0.0.1:1/none"
    with pytest.raises(ConfigError) as caught:
        await Database.open(url)
    assert "hidden" not in caught.value.details
    assert "127.0.0.1:1" in caught.value.details


async def test_unwritable_sqlite_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot open database"):
        await Database.open("sqlite+aiosqlite:////proc/no/such/remotehands.db")


def test_safe_url_hides_the_password() -> None:
    assert safe_url("postgresql+asyncpg://u:pw@h/d") == "postgresql+asyncpg://u:***@h/d"


def test_missing_postgres_binaries_fail_with_a_clear_message(tmp_path: Path) -> None:
    from tests.pg import PostgresUnavailable, start_postgres

    with pytest.raises(PostgresUnavailable, match="apt-get install postgresql`"):
        start_postgres(tmp_path)
