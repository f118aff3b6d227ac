"""Fixtures of the security suite: the fleet server's (``server`` over ASGI, ``fleet`` on a
loopback port, both on SQLite and PostgreSQL), reused from the server tests."""

from __future__ import annotations

from tests.server.conftest import (  # noqa: F401 (fixtures)
    backend,
    database_url,
    migrated_database_url,
    postgres,
    server,
    settings_overrides,
    templates,
)
from tests.server.link_harness import fleet_fixture  # noqa: F401 (fixture)
