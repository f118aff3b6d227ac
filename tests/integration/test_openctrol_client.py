"""The Openctrol client reads answers in any key casing: against a small stand-in of the real
agent on loopback that answers as ASP.NET's defaults do (camelCase DTOs) and in PascalCase, and
that lacks the routes the document lists but the running agent dropped."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from remotehands.agent.config import AgentConfig
from remotehands.agent.runtime import Agent
from remotehands.drivers.openctrol.client import OpenctrolClient, OpenctrolHTTPError, ofra_header
from remotehands.serving import bound_address, serve_http
from remotehands.testing.agents import running_device

pytestmark = pytest.mark.anyio

KEY = "stand-in-key"


def _stand_in() -> tuple[Starlette, list[tuple[str, dict[str, Any]]]]:
    """An Openctrol agent answering camelCase and PascalCase; it records the bodies it got."""
    got: list[tuple[str, dict[str, Any]]] = []

    async def record(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(await request.body() or b"{}")
        got.append((request.url.path, body))
        return body

    def authorised(request: Request) -> bool:
        return request.headers.get("x-openctrol-key") == KEY

    async def session(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse(
                {"error": "unauthorized", "details": "Missing or invalid credentials"},
                status_code=401,
            )
        await record(request)
        port = request.url.port
        return JSONResponse(
            {
                "sessionId": "s-1",
                "expiresAt": "2030-01-01T00:00:00+00:00",
                "webSocketUrl": f"ws://10.0.0.9:{port}/ws/desktop?sess=s-1&token=t",
            }
        )

    async def monitors(request: Request) -> Response:
        return JSONResponse(
            {
                "Monitors": [{"Id": "DISPLAY1", "Width": 800, "Height": 600, "IsPrimary": True}],
                "CurrentMonitorId": "DISPLAY1",
            }
        )

    async def state(request: Request) -> Response:
        return JSONResponse(
            {
                "defaultOutputDeviceId": "d1",
                "devices": [
                    {
                        "id": "d1",
                        "name": "Speakers",
                        "volume": 0.5,
                        "muted": False,
                        "isDefault": True,
                    }
                ],
                "sessions": [],
            }
        )

    async def device(request: Request) -> Response:
        await record(request)
        return Response(status_code=200)  # the real agent's empty 200

    async def desktop(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(
            json.dumps(
                {
                    "type": "hello",
                    "monitors": [{"id": "DISPLAY1", "width": 8, "height": 8, "is_primary": True}],
                }
            )
        )
        await websocket.send_bytes(ofra_header(8, 8) + b"\xff\xd8jpeg")
        await websocket.receive_text()

    app = Starlette(
        routes=[
            Route("/api/v1/sessions/desktop", session, methods=["POST"]),
            Route("/api/v1/rd/monitors", monitors, methods=["GET"]),
            Route("/api/v1/audio/state", state, methods=["GET"]),
            Route("/api/v1/audio/device", device, methods=["POST"]),
            WebSocketRoute("/ws/desktop", desktop),
        ]
    )
    return app, got


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    app, got = _stand_in()
    async with serve_http(app, "127.0.0.1:0", websockets=True) as server:
        yield f"http://{bound_address(server)}", got


async def test_answers_are_read_in_any_casing(
    stand_in: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, got = stand_in
    async with OpenctrolClient(url, KEY) as client:
        session = await client.create_session("ha", 5)
        assert session.id == "s-1" and session.expires_at.year == 2030
        assert got[-1] == ("/api/v1/sessions/desktop", {"HaId": "ha", "TtlSeconds": 5})
        monitors = await client.monitors()
        assert monitors["current_monitor_id"] == "DISPLAY1"
        assert monitors["monitors"][0]["is_primary"] is True
        state = await client.audio_state()
        assert state["default_output_device_id"] == "d1"
        assert state["devices"][0]["is_default"] is True
        # the socket URL names the agent's own view of its address: the client keeps its own
        stream = await client.desktop(session)
        try:
            assert [m["id"] for m in stream.monitors] == ["DISPLAY1"]
            frame = await stream.frame_after(0, 10)
            assert (frame.width, frame.height, frame.data) == (8, 8, b"\xff\xd8jpeg")
        finally:
            await stream.aclose()
        # /audio/device/legacy is not there: the document's /audio/device takes the body
        await client.set_device("d1", 0.25, True)
        assert got[-1] == (
            "/api/v1/audio/device",
            {"device_id": "d1", "volume": 0.25, "muted": True, "set_default": False},
        )
    async with OpenctrolClient(url, "wrong") as client:
        with pytest.raises(OpenctrolHTTPError) as refused:
            await client.create_session("ha", 5)
    assert (refused.value.status, refused.value.error) == (401, "unauthorized")


async def test_the_face_settings_come_from_the_config_file(tmp_path: Path) -> None:
    password = tmp_path / "faces.pw"
    password.write_text("pw\n")
    password.chmod(0o600)
    config = AgentConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "password_file": str(password),
            "devices": [
                {
                    "name": "octl",
                    "driver": "fake",
                    "listen": "127.0.0.1:0",
                    "faces": ["native", "openctrol"],
                    "face_settings": {"openctrol": {"allow_ha_ids": ["from-file"]}},
                }
            ],
        }
    )
    agent = Agent.from_config(config)
    async with (
        running_device(agent, "octl") as run,
        httpx.AsyncClient(base_url=f"http://{run.address}", timeout=10) as http,
    ):
        for ha_id, status in (("from-file", 200), ("other", 401)):
            response = await http.post(
                "/api/v1/sessions/desktop",
                json={"HaId": ha_id},
                headers={"X-Openctrol-Key": "pw"},
            )
            assert response.status_code == status, response.text
    bad = config.model_copy(deep=True)
    bad.devices[0].face_settings["openctrol"] = {"allow_ha_id": ["typo"]}
    with pytest.raises(Exception, match="openctrol face"):
        Agent.from_config(bad)
