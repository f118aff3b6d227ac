"""The live-fleet harness of the link, device-action, bulk, events and metrics tests.

:func:`running_fleet` runs the real server (``create_app``, real wall clock) on uvicorn on a
loopback port, with a real database, an owner, and helpers to make users, tokens, enrolled devices
and simulated agents. The ``fleet`` fixture does so on each backend of ``conftest.database_url``
(SQLite and PostgreSQL). The test modules import the fixture and helpers from here; there are no
tests in this module.

The agent links' heartbeats and silence are measured by a :class:`FakeMonotonic` clock that moves
only when a test advances it (``fleet.monotonic``): a link never goes silent because the machine
is loaded, and a test of silence decides when it happened.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.models import Device
from remotehands.server.http.users import create_user
from remotehands.server.services import Services
from remotehands.server.settings import ServerSettings
from remotehands.serving import serve_http
from remotehands.testing.simagent import Enrolled, SimulatedAgent, enroll
from remotehands.testing.xapps import eventually
from tests.server.conftest import FAST_PASSWORDS, PASSWORD, FakeMonotonic

HEARTBEAT_S = 0.2
"""The heartbeat interval of the test servers: offline after 3 x 0.2 s of the fake clock."""

_users = itertools.count(1)


@dataclasses.dataclass
class LiveFleet:
    """A server running on a loopback port, and the means to populate it."""

    app: FastAPI
    settings: ServerSettings
    base_url: str
    ws_url: str
    owner: httpx.AsyncClient
    monotonic: FakeMonotonic
    """The clock of heartbeats and silence: advance it to make agents silent."""
    _clients: list[httpx.AsyncClient] = dataclasses.field(default_factory=list)

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        """An HTTP client of the server, authenticated with ``token`` when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)
        self._clients.append(client)
        return client

    async def login(self, role: str) -> str:
        """A session token of a fresh user with ``role``."""
        username = f"{role}{next(_users)}"
        await create_user(self.services, username, PASSWORD, role)
        response = await self.client().post(
            "/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    async def api_token(
        self, role: str, *, read_only: bool = False, tags: list[str] | None = None
    ) -> str:
        """An API token of a fresh user with ``role``, optionally read-only or tag-limited."""
        session = await self.login(role)
        body: dict[str, Any] = {"name": "test", "read_only": read_only}
        if tags is not None:
            body["tags"] = tags
        response = await self.client(session).post("/v1/tokens", json=body)
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    async def enroll(
        self, n: int = 1, *, tags: list[str] | tuple[str, ...] = (), name_prefix: str = "sim"
    ) -> list[Enrolled]:
        """``n`` enrolled devices (not connected)."""
        return await enroll(self.owner, n, tags=tags, name_prefix=name_prefix)

    def agent(self, device: Enrolled, **options: Any) -> SimulatedAgent:
        """A simulated agent for ``device`` (connect it with ``async with``)."""
        return SimulatedAgent(self.ws_url, device.credential, **options)

    async def device(self, device_id: str) -> Device | None:
        """The device's row as the database has it now."""
        async with self.services.db.session() as session:
            return await session.get(Device, device_id)

    async def wait_status(self, device_id: str, status: str, timeout: float = 5.0) -> None:
        """Wait until the database shows the device ``online`` or ``offline``."""

        async def reached() -> bool:
            row = await self.device(device_id)
            return row is not None and row.status == status

        await eventually(reached, timeout=timeout)


@asynccontextmanager
async def running_fleet(tmp_path: Path, **settings: Any) -> AsyncIterator[LiveFleet]:
    """The server on a loopback port for the block; ``settings`` override the test defaults."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "heartbeat_interval_s": HEARTBEAT_S,
        "request_timeout_s": 5.0,
        **settings,
    }
    server_settings = ServerSettings(**values)
    monotonic = FakeMonotonic()
    app = create_app(server_settings, passwords=Passwords(FAST_PASSWORDS), monotonic=monotonic)
    async with serve_http(app, "127.0.0.1:0", lifespan=True, websockets=True) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        services: Services = app.state.services
        await create_user(services, "owner", PASSWORD, "owner")
        anonymous = httpx.AsyncClient(base_url=base_url)
        login = await anonymous.post(
            "/v1/auth/login", json={"username": "owner", "password": PASSWORD}
        )
        login.raise_for_status()
        await anonymous.aclose()
        owner = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {login.json()['token']}"},
            timeout=30,
        )
        ws_url = f"ws://127.0.0.1:{port}/v1/agent/ws"
        fleet = LiveFleet(app, server_settings, base_url, ws_url, owner, monotonic)
        try:
            yield fleet
        finally:
            for client in [owner, *fleet._clients]:
                await client.aclose()


@pytest.fixture(name="fleet")
async def fleet_fixture(tmp_path: Path, migrated_database_url: str) -> AsyncIterator[LiveFleet]:
    """A running server with a short heartbeat (offline after 0.6 s of ``fleet.monotonic``), on
    each backend."""
    async with running_fleet(tmp_path, database_url=migrated_database_url) as running:
        yield running
