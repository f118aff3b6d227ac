"""Faces on a device's listener, over real loopback HTTP and WebSocket: two faces side by side,
each answering its own 401/404/405/422 shapes, and route collisions refused at start.

The second face, ``echo``, is defined here (faces are named by import string as well as by the
table's names): it authenticates with an ``X-Echo-Key`` header and answers errors as
``{"status": N, "error_message": ...}``, nothing like the native face's shapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from remotehands.agent.config import AgentConfig
from remotehands.agent.faces.base import Face, FaceContext
from remotehands.agent.faces.listener import create_listener_app, route_collisions
from remotehands.agent.runtime import Agent, DeviceRun
from remotehands.errors import ConfigError
from remotehands.protocol.encoding import jsonable
from remotehands.testing.agents import running_device

pytestmark = pytest.mark.anyio

PASSWORD = "face-password"
ECHO_KEY = "echo-key"


def _echo_error(status: int, message: str) -> Response:
    return JSONResponse({"status": status, "error_message": message}, status_code=status)


def echo_face(context: FaceContext) -> Face:
    """A small face of another shape, fronting the same device."""

    def authorised(request: Request) -> bool:
        return request.headers.get("x-echo-key") == ECHO_KEY

    async def size(request: Request) -> Response:
        if not authorised(request):
            return _echo_error(401, "send X-Echo-Key")
        screens = jsonable(await context.dispatcher.run("screens"))["screens"]
        return JSONResponse({"device": context.device, "width": screens[0]["width"]})

    async def say(request: Request) -> Response:
        if not authorised(request):
            return _echo_error(401, "send X-Echo-Key")
        body = await request.json()
        if not isinstance(body.get("text"), str):
            return _echo_error(422, "text must be a string")
        return JSONResponse({"said": context.settings.get("prefix", "") + body["text"]})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text((await websocket.receive_text()).upper())
        await websocket.close()

    async def unrouted(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return _echo_error(status, f"echo has no {request.method} {request.url.path}")

    routes = [
        Route("/echo/size", size, methods=["GET"]),
        Route("/echo/say", say, methods=["POST"]),
        WebSocketRoute("/echo/ws", socket),
    ]
    return Face(name="echo", routes=routes, error_handler=unrouted, prefixes=("/echo/",))


def clash_face(context: FaceContext) -> Face:
    """A face whose routes fall on the native face's."""

    async def nothing(request: Request) -> Response:
        return Response(status_code=204)

    return Face(name="clash", routes=[Route("/windows/{window}/focus", nothing,
                                            methods=["POST"])],
                error_handler=echo_face(context).error_handler)  # fmt: skip


ECHO = f"{__name__}:echo_face"


def _config(tmp_path: Path, faces: list[str]) -> AgentConfig:
    password = tmp_path / "faces.pw"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    face_settings = {ECHO: {"prefix": "echo: "}} if ECHO in faces else {}
    return AgentConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "password_file": str(password),
        "devices": [{"name": "two-faced", "driver": "fake", "listen": "127.0.0.1:0",
                     "faces": faces, "settings": {"width": 320, "height": 200},
                     "face_settings": face_settings}],
    })  # fmt: skip


@pytest.fixture
async def device(tmp_path: Path) -> AsyncIterator[DeviceRun]:
    async with running_device(
        Agent.from_config(_config(tmp_path, ["native", ECHO])), "two-faced"
    ) as run:
        yield run


async def test_two_faces_answer_each_in_its_own_shapes(device: DeviceRun) -> None:
    async with httpx.AsyncClient(base_url=f"http://{device.address}", timeout=10) as http:
        # native: bearer tokens, {"error", "details"}
        unauthorised = await http.get("/screens")
        assert unauthorised.status_code == 401 and unauthorised.json()["error"] == "unauthorized"
        login = await http.post("/auth/login", json={"password": PASSWORD})
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        assert (await http.get("/screens")).json()["screens"][0]["width"] == 320
        missing = await http.get("/no/such/route")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        wrong = await http.delete("/screens")
        assert wrong.status_code == 405
        assert wrong.json() == {"error": "invalid", "details": "DELETE is not allowed on /screens"}
        invalid = await http.post("/mouse/move", json={"x": "left"})
        assert invalid.status_code == 422 and invalid.json()["error"] == "invalid"

        # echo: its own key, {"status", "error_message"}, on the same listener
        denied = await http.get("/echo/size")
        assert denied.status_code == 401
        assert denied.json() == {"status": 401, "error_message": "send X-Echo-Key"}
        http.headers["X-Echo-Key"] = ECHO_KEY
        size = await http.get("/echo/size")
        assert size.json() == {"device": "two-faced", "width": 320}
        gone = await http.get("/echo/nothing")
        assert gone.status_code == 404
        assert gone.json() == {"status": 404, "error_message": "echo has no GET /echo/nothing"}
        not_allowed = await http.put("/echo/say", json={"text": "hi"})
        assert not_allowed.status_code == 405 and not_allowed.json()["status"] == 405
        bad = await http.post("/echo/say", json={"text": 5})
        assert bad.status_code == 422 and bad.json()["error_message"] == "text must be a string"
        said = await http.post("/echo/say", json={"text": "hi"})
        assert said.json() == {"said": "echo: hi"}  # the prefix is the face's own setting

    # WebSockets are on for the listener's faces
    async with connect(f"ws://{device.address}/echo/ws", open_timeout=10) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 10) == "HELLO"


async def test_a_route_collision_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Agent.from_config(_config(tmp_path, ["native", f"{__name__}:clash_face"]))
    details = err.value.details
    assert details.startswith("device 'two-faced': ")
    assert "faces 'native' and 'clash' both serve POST /windows/{id}/focus" in details
    assert "(as POST /windows/{window}/focus)" in details
    with pytest.raises(ConfigError, match="lists the face 'native' twice"):
        Agent.from_config(_config(tmp_path, ["native", "native"]))


def test_collisions_compare_methods_and_paths() -> None:
    async def ok(request: Request) -> Response:
        return Response()

    async def unrouted(request: Request, exc: Exception) -> Response:
        return Response(status_code=404)

    def face(name: str, *routes: Route | WebSocketRoute) -> Face:
        return Face(name=name, routes=routes, error_handler=unrouted)

    a = face(
        "a",
        Route("/api/info", ok, methods=["GET"]),
        Route("/api/{n:int}", ok, methods=["GET", "PUT"]),
        WebSocketRoute("/ws", ok),
    )
    assert route_collisions([a, face("b", Route("/api/info", ok, methods=["POST"]))]) == []
    assert route_collisions([a, face("b", Route("/api/{name}", ok, methods=["GET"]))]) == [
        "faces 'a' and 'b' both serve GET /api/info (as GET /api/{name})",
        "faces 'a' and 'b' both serve GET/PUT /api/{n:int} (as GET /api/{name})",
    ]
    assert route_collisions([a, face("b", Route("/api/7", ok, methods=["PUT"]))]) == [
        "faces 'a' and 'b' both serve GET/PUT /api/{n:int} (as PUT /api/7)"
    ]
    assert route_collisions([a, face("b", Route("/ws", ok, methods=["GET"]))]) == []
    assert route_collisions([a, face("b", WebSocketRoute("/ws", ok))]) == [
        "faces 'a' and 'b' both serve WEBSOCKET /ws"
    ]
    with pytest.raises(ConfigError, match="serves no face"):
        create_listener_app([])
