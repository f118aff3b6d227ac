"""The fleet server's database: tables, engine, migrations (Alembic, shipped in the wheel)."""

from remotehands.server.db.engine import Database

__all__ = ["Database"]
