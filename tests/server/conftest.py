"""Fixtures of the fleet server tests: a real server app on SQLite and on PostgreSQL.

``server`` is the main one: the app built by ``create_app`` with its lifespan running, fake clocks
(wall and monotonic) and a cheap password hasher injected, an ``httpx.AsyncClient`` on it over ASGI,
and an owner logged in. It is parametrized over both backends, so every test that uses it runs
twice. Helpers on :class:`Fleet` create users of each role, tokens, enrolled devices.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.engine import Database
from remotehands.server.db.models import Device, new_id
from remotehands.server.http.users import create_user
from remotehands.server.services import Services
from remotehands.server.settings import ServerSettings
from remotehands.serving import serve_http
from tests.pg import PostgresServer, PostgresUnavailable, start_postgres

OWNER_PASSWORD = "owner-password-1"
PASSWORD = "password-1234"
FAST_PASSWORDS = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
"""argon2 at its cheapest: the tests check the flows, not the hash's cost."""


class FakeClock:
    """An aware UTC clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)


class FakeMonotonic:
    """Monotonic seconds that move only when told to: the clock of agent-link heartbeats and
    of the principal cache in tests."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; fails (never skips) when it cannot start."""
    try:
        server = start_postgres()
    except PostgresUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend a test runs on."""
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A fresh, empty database of the backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'remotehands.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = await postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        await postgres.drop_database(name)


@pytest.fixture(scope="session")
def templates() -> dict[str, str]:
    """Databases migrated once per session, by backend: SQLite file path or PostgreSQL name."""
    return {}


@pytest.fixture
async def migrated_database_url(
    backend: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    templates: dict[str, str],
    request: pytest.FixtureRequest,
) -> AsyncIterator[str]:
    """A fresh database of the backend already at the newest schema: a copy of a template
    migrated once per session (migrating each test's database anew costs more than the test)."""
    if backend == "sqlite":
        if "sqlite" not in templates:
            path = tmp_path_factory.mktemp("template") / "remotehands.db"
            async with await Database.open(f"sqlite+aiosqlite:///{path}"):
                pass
            templates["sqlite"] = str(path)
        shutil.copyfile(templates["sqlite"], tmp_path / "remotehands.db")
        yield f"sqlite+aiosqlite:///{tmp_path / 'remotehands.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    if "postgres" not in templates:
        template = await postgres.create_database()
        async with await Database.open(postgres.url(template)):
            pass
        templates["postgres"] = template
    name = await postgres.create_database(template=templates["postgres"])
    try:
        yield postgres.url(name)
    finally:
        await postgres.drop_database(name)


@dataclass
class Fleet:
    """A running server and the means to drive it."""

    app: FastAPI
    services: Services
    client: httpx.AsyncClient
    clock: FakeClock
    owner: dict[str, str]
    """Headers of the owner's session."""
    owner_id: str
    _users: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    monotonic: FakeMonotonic = field(default_factory=FakeMonotonic)
    """The monotonic clock of the app (principal cache, agent-link heartbeats)."""

    @property
    def settings(self) -> ServerSettings:
        return self.services.settings

    def other_client(self, ip: str) -> httpx.AsyncClient:
        """A client that calls from another address (close it after use)."""
        transport = httpx.ASGITransport(app=self.app, client=(ip, 4321))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        response = await self.client.post(
            "/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    async def user(self, role: str, username: str | None = None) -> tuple[str, dict[str, str]]:
        """A user with ``role`` (created directly) and the headers of a session of it."""
        if username is None and role in self._users:
            return self._users[role]
        name = username or f"{role}-{new_id('u')[2:8]}"
        user = await create_user(self.services, name, PASSWORD, role)
        result = (user.id, await self.login(name))
        if username is None:
            self._users[role] = result
        return result

    async def headers(self, role: str | None) -> dict[str, str]:
        """Headers of a session with ``role``; ``None``: no credentials."""
        if role is None:
            return {}
        if role == "owner":
            return self.owner
        return (await self.user(role))[1]

    async def token(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        """Create an API token; returns the creation answer (with ``token``)."""
        body.setdefault("name", "test token")
        response = await self.client.post("/v1/tokens", headers=headers, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def enrollment(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/devices/enrollment", headers=self.owner, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def register(self, **body: Any) -> dict[str, Any]:
        """Enroll a device through the API; returns the registration answer."""
        token = (await self.enrollment(**body))["token"]
        response = await self.client.post(
            "/v1/agent/register", json={"enrollment_token": token, "hardware_id": "hw-1"}
        )
        assert response.status_code == 200, response.text
        registered: dict[str, Any] = response.json()
        return registered

    async def device(
        self, name: str, tags: list[str] | None = None, status: str = "offline", **fields: Any
    ) -> str:
        """Insert a device row directly (as if enrolled and seen by an agent)."""
        device_id = new_id("dev")
        async with self.services.db.session() as db:
            db.add(
                Device(
                    id=device_id,
                    name=name,
                    tags=tags or [],
                    status=status,
                    device_type=fields.get("device_type", "x11"),
                    driver=fields.get("driver", "fake"),
                    agent_version=fields.get("agent_version", "0.1.0"),
                    last_seen=fields.get("last_seen", self.clock()),
                    health=fields.get("health"),
                    capabilities=fields.get("capabilities", ["screen"]),
                    screens=fields.get("screens", [{"id": 0, "width": 1024, "height": 768}]),
                    hardware_id=fields.get("hardware_id", f"hw-{device_id}"),
                    credential_hash=new_id("cred"),
                    created_at=self.clock(),
                )
            )
            await db.commit()
        return device_id

    async def audit(self, **query: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/audit", headers=self.owner, params=query)
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> ServerSettings:
    """Settings for a test server in ``tmp_path``."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "public_url": "http://fleet.test:8080",
        **overrides,
    }
    return ServerSettings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override to change the settings of ``server`` in a test module."""
    return {}


@pytest.fixture
async def server(
    migrated_database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]
) -> AsyncIterator[Fleet]:
    """A running server with an owner logged in (see the module docstring)."""
    clock = FakeClock()
    monotonic = FakeMonotonic()
    settings = make_settings(tmp_path, migrated_database_url, **settings_overrides)
    app = create_app(
        settings, clock=clock, passwords=Passwords(FAST_PASSWORDS), monotonic=monotonic
    )
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            owner = await create_user(services, "owner", OWNER_PASSWORD, "owner")
            fleet = Fleet(app, services, client, clock, {}, owner.id, monotonic=monotonic)
            fleet.owner = await fleet.login("owner", OWNER_PASSWORD)
            yield fleet


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port (so a URL can be known before serving)."""
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # asyncio sets TCP_NODELAY only for IPPROTO_TCP sockets
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(app: FastAPI, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on ``sock`` (default: a free loopback port), lifespan
    included; yields its URL."""
    sock = sock or loopback_socket()
    port = sock.getsockname()[1]
    try:
        async with serve_http(app, sock=sock, lifespan=True, websockets=True):
            yield f"http://127.0.0.1:{port}"
    finally:
        sock.close()
