"""A real fleet server on loopback with its owner logged in, for the agent's integration tests
(the link, an agent of many devices)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.bootstrap import initialise
from remotehands.server.settings import ServerSettings
from tests.server.conftest import FAST_PASSWORDS, FakeMonotonic, loopback_socket, serve

OWNER_PASSWORD = "owner-password-123"


@dataclass
class LiveServer:
    """The server's URL, a client logged in as its owner, and its app."""

    url: str
    http: httpx.AsyncClient
    app: FastAPI

    async def enrollment(self, name: str = "fake-1") -> str:
        """A new enrollment token suggesting ``name``."""
        response = await self.http.post("/v1/devices/enrollment",
                                        json={"suggested_name": name})  # fmt: skip
        token: str = response.json()["token"]
        return token

    async def device(self, name: str) -> dict[str, Any] | None:
        """The device named ``name``, as the device list shows it, or None."""
        devices = (await self.http.get("/v1/devices")).json()["devices"]
        return next((d for d in devices if d["name"] == name), None)


@pytest.fixture
async def live_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """A server with heartbeats every 0.2 s; silence is judged by a clock that stands still,
    so a loaded machine that stalls an agent for 0.6 s does not drop its link mid-test."""
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = ServerSettings(data_dir=tmp_path / "server", public_url=url,
                              heartbeat_interval_s=0.2)  # fmt: skip
    passwords = Passwords(FAST_PASSWORDS)
    await initialise(settings, password=OWNER_PASSWORD, passwords=passwords)
    app = create_app(settings, passwords=passwords, monotonic=FakeMonotonic())
    async with serve(app, sock) as served, httpx.AsyncClient(base_url=served, timeout=20) as http:
        login = await http.post(
            "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
        )
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield LiveServer(served, http, app)
