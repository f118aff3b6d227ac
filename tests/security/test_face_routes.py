"""Every route of every agent face refuses a request without credentials and one with wrong
credentials: the routes come from the faces themselves (``Face.routes``), so a route added to a
face is covered the day it appears. The few routes a face serves without credentials, as the
system it copies does, are listed here by name; any other route that answers is a failure.

One device serves the native, PiKVM, TinyPilot and Openctrol faces side by side, over real
loopback HTTP and WebSocket, on a FakeDriver with every capability.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from remotehands.agent.config import AgentConfig
from remotehands.agent.runtime import Agent, DeviceRun
from remotehands.testing.agents import running_device

pytestmark = pytest.mark.anyio

PASSWORD = "faces-password-1"
FACES = ["native", "pikvm", "tinypilot", "openctrol"]

PUBLIC = {
    ("native", "GET", "/health"),
    ("native", "POST", "/auth/login"),  # a wrong password is refused: checked below
    ("pikvm", "POST", "/api/auth/login"),
    ("pikvm", "POST", "/api/auth/logout"),  # without a session: nothing to end
    ("tinypilot", "POST", "/api/v1/auth"),  # tokens for loopback clients, as TinyPilot does
    ("openctrol", "GET", "/api/v1/health"),  # public in Openctrol's document
}
"""(face, method, path) served without credentials, as the system each face copies does."""

WRONG = {
    "Authorization": "Bearer not-a-token",
    "X-KVMD-User": "admin",
    "X-KVMD-Passwd": "wrong-password",
    "X-Openctrol-Key": "wrong-key",
    "Cookie": "auth_token=" + "0" * 64,
}
"""A wrong credential of every kind the faces read, sent all at once."""

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _concrete(path: str) -> str:
    return _PARAM.sub("1", path)


@pytest.fixture
async def device(tmp_path: Path) -> AsyncIterator[DeviceRun]:
    password = tmp_path / "faces.pw"
    password.write_text(PASSWORD)
    password.chmod(0o600)
    config = AgentConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "password_file": str(password),
        "devices": [{
            "name": "every-face", "driver": "fake", "listen": "127.0.0.1:0", "faces": FACES,
            "settings": {"width": 320, "height": 200},
            "face_settings": {"openctrol": {"allow_ha_ids": ["ha"]}},
        }],
    })  # fmt: skip
    async with running_device(Agent.from_config(config), "every-face") as run:
        yield run


def _http_routes(run: DeviceRun) -> list[tuple[str, str, str]]:
    found = set()
    for face in run.plan.faces:
        for route in face.routes:
            if isinstance(route, Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        found.add((face.name, method, route.path))
    return sorted(found)


async def test_every_face_route_refuses_missing_and_wrong_credentials(device: DeviceRun) -> None:
    routes = _http_routes(device)
    assert {face for face, _, _ in routes} == set(FACES)  # every face is in the walk
    assert len(routes) > 60
    refused_codes = {400, 401, 403}
    async with httpx.AsyncClient(base_url=f"http://{device.address}", timeout=10) as http:
        for face, method, path in routes:
            if (face, method, path) in PUBLIC:
                continue
            url = _concrete(path)
            for headers in ({}, WRONG):
                answer = await http.request(method, url, headers=headers, content=b"{}")
                why = (face, method, path, headers, answer.status_code, answer.text)
                assert answer.status_code in refused_codes, why
        # the public login routes refuse a wrong password all the same (by now the walk's own
        # wrong passwords may have this client rate limited: 429 is a refusal too)
        native = await http.post("/auth/login", json={"password": "wrong"})
        assert native.status_code in {401, 429}
        pikvm = await http.post("/api/auth/login", data={"user": "admin", "passwd": "wrong"})
        assert pikvm.status_code in {403, 429}
        # and TinyPilot's token for a loopback client opens nothing to anyone else: a request
        # that says it was forwarded from elsewhere is no loopback client
        forwarded = await http.post("/api/v1/auth", headers={"X-Forwarded-For": "192.0.2.1"})
        assert forwarded.status_code in refused_codes


async def test_every_face_socket_refuses_missing_and_wrong_credentials(device: DeviceRun) -> None:
    sockets = sorted({(face.name, route.path) for face in device.plan.faces
                      for route in face.routes if isinstance(route, WebSocketRoute)})  # fmt: skip
    assert sockets
    for face, path in sockets:
        for headers in ({}, WRONG):
            url = f"ws://{device.address}{_concrete(path)}"
            try:
                async with connect(url, additional_headers=headers, open_timeout=10) as ws:
                    # accepted only to be told no: the socket closes without serving
                    with pytest.raises(ConnectionClosed):
                        while True:
                            message = await asyncio.wait_for(ws.recv(), 10)
                            assert "loop" not in str(message)[:200], (face, path, message)
            except InvalidStatus as refused:
                assert refused.response.status_code in {400, 401, 403}, (face, path)
