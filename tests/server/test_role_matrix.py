"""Every route of the core API against every role: no token, viewer, operator, admin, owner."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from remotehands.protocol.actions import ACTIONS
from remotehands.server.http.users import create_user
from tests.server.conftest import OWNER_PASSWORD, PASSWORD, Fleet

pytestmark = pytest.mark.anyio

ROLES: list[str | None] = [None, "viewer", "operator", "admin", "owner"]
RANK = {"viewer": 0, "operator": 1, "admin": 2, "owner": 3}


@dataclass
class Route:
    method: str
    path: str
    minimum: str | None
    """The lowest role allowed; None: public."""
    ok: int
    body: Any = None
    target: Callable[[Fleet, dict[str, str]], Awaitable[str]] | None = None
    """Makes the ``{target}`` of the path, given the caller's headers."""


_made = itertools.count()


async def _fresh_session(fleet: Fleet, role: str) -> dict[str, str]:
    if role == "owner":
        return await fleet.login("owner", OWNER_PASSWORD)
    return (await fleet.user(role, username=f"session-{next(_made)}"))[1]


async def _fresh_user(fleet: Fleet, headers: dict[str, str]) -> str:
    user = await create_user(fleet.services, f"target-{next(_made)}", PASSWORD, "viewer")
    return user.id


async def _own_token(fleet: Fleet, headers: dict[str, str]) -> str:
    token = await fleet.token(headers or fleet.owner)
    return str(token["id"])


async def _device(fleet: Fleet, headers: dict[str, str]) -> str:
    capabilities = ["screen", "keyboard", "mouse", "clipboard", "windows", "apps", "sequence",
                    "power", "media", "switch", "audio", "ocr", "act"]  # fmt: skip
    return await fleet.device("matrix", ["t"], capabilities=capabilities)


ROUTES = [
    Route("GET", "/v1/auth/me", "viewer", 200),
    Route("POST", "/v1/auth/logout", "viewer", 204),
    Route("GET", "/v1/users", "admin", 200),
    Route(
        "POST",
        "/v1/users",
        "admin",
        201,
        body={"username": "made-here", "password": PASSWORD, "role": "viewer"},
    ),
    Route("GET", "/v1/users/{target}", "admin", 200, target=_fresh_user),
    Route("PATCH", "/v1/users/{target}", "admin", 200, {"disabled": True}, _fresh_user),
    Route("DELETE", "/v1/users/{target}", "admin", 204, target=_fresh_user),
    Route("GET", "/v1/tokens", "viewer", 200),
    Route("POST", "/v1/tokens", "viewer", 201, body={"name": "matrix"}),
    Route("DELETE", "/v1/tokens/{target}", "viewer", 204, target=_own_token),
    Route("GET", "/v1/devices", "viewer", 200),
    Route("GET", "/v1/devices/{target}", "viewer", 200, target=_device),
    Route("PATCH", "/v1/devices/{target}", "admin", 200, {"name": "renamed"}, _device),
    Route("DELETE", "/v1/devices/{target}", "admin", 204, target=_device),
    Route("POST", "/v1/devices/enrollment", "admin", 201, body={}),
    Route("GET", "/v1/audit", "admin", 200),
    Route("GET", "/install", None, 200),
    Route("GET", "/install/remotehands.tar.gz", None, 200),
]


# Valid parameters for every action, so that the matrix reaches the role check and beyond.
_SAMPLES: dict[str, dict[str, Any]] = {
    "screenshot.region": {"x": 0, "y": 0, "width": 10, "height": 10},
    "screenshots": {"variants": [{"name": "all"}]},
    "mouse.move": {"x": 1, "y": 1},
    "mouse.drag": {"from_x": 1, "from_y": 1, "to_x": 2, "to_y": 2},
    "keyboard.type": {"text": "x"},
    "keyboard.hotkey": {"keys": ["ctrl", "c"]},
    "keyboard.key": {"keys": "enter"},
    "keyboard.down": {"key": "shift"},
    "keyboard.up": {"key": "shift"},
    "clipboard.set": {"text": "x"},
    "clipboard.slot_store": {"text": "x"},
    "clipboard.capture": {"captures": [{"slot": "a"}]},
    "sequence": {"steps": [{"type": "sleep", "ms": 1}]},
    "window.move": {"bounds": {"x": 0, "y": 0, "width": 10, "height": 10}},
    "application.open": {"path": "/bin/true"},
    "application.running": {"name": "true"},
    "application.close": {"window_id": 1},
    "sleep": {"ms": 1},
    "power.click": {"button": "reset"},
    "media.fetch": {"url": "http://127.0.0.1:9/x.iso"},
    "media.mount": {"name": "a.iso"},
    "switch.set": {"port": 1},
    "switch.beacon": {"port": 1},
    "switch.power": {"port": 1, "action": "off"},
    "switch.click": {"port": 1, "button": "reset"},
    "audio.volume": {"volume": 50},
    "audio.default": {"device_id": "sink"},
    "audio.move": {"session_id": "1", "device_id": "sink"},
    "ocr.find": {"text": "x"},
    "ocr.click": {"text": "x"},
    "ocr.wait": {"text": "x"},
}


def _action_routes() -> list[Route]:
    """Every device action through the server: viewers may read, operators also control; the
    matrix device has no agent, so an allowed call ends as 503 ``device_offline``."""
    routes = []
    for spec in ACTIONS:
        path = spec.path.replace("{id}", "123").replace("{name}", "slot1")
        sample = _SAMPLES.get(spec.name, {})
        minimum = "viewer" if spec.access == "read" else "operator"
        if spec.method == "GET":
            query = "&".join(f"{k}={v}" for k, v in sample.items())
            full = "/v1/devices/{target}" + path + (f"?{query}" if query else "")
            routes.append(Route("GET", full, minimum, 503, target=_device))
        else:
            routes.append(Route(spec.method, "/v1/devices/{target}" + path, minimum, 503,
                                body=sample or None, target=_device))  # fmt: skip
    return routes


ROUTES += _action_routes()
ROUTES += [
    Route(
        "POST",
        "/v1/bulk",
        "operator",
        200,
        body={"action": "mouse.move", "params": {"x": 1, "y": 1}, "selector": {"tags": ["t"]}},
        target=_device,
    ),
    Route(
        "POST",
        "/v1/bulk",
        "viewer",
        200,
        body={"action": "screens", "selector": {"tags": ["t"]}},
        target=_device,
    ),
    # uploading a screenshot makes the device send data to a URL: an operator's call
    Route(
        "GET",
        "/v1/devices/{target}/screenshot?upload_url=http://127.0.0.1:9/x",
        "operator",
        503,
        target=_device,
    ),
    Route(
        "POST",
        "/v1/bulk",
        "operator",
        200,
        body={
            "action": "screenshot",
            "params": {"upload_url": "http://127.0.0.1:9/x"},
            "selector": {"tags": ["t"]},
        },
        target=_device,
    ),
    Route("GET", "/metrics", "viewer", 200),
    Route("GET", "/health", None, 200),
]


def expected(route: Route, role: str | None) -> int:
    if route.minimum is None:
        return route.ok
    if role is None:
        return 401
    return route.ok if RANK[role] >= RANK[route.minimum] else 403


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path.split('?')[0]}")
async def test_role_matrix(server: Fleet, route: Route) -> None:
    seen = {}
    for role in ROLES:
        if route.path == "/v1/auth/logout" and role is not None:
            headers = await _fresh_session(server, role)  # logging out ends it
        else:
            headers = await server.headers(role)
        path = route.path
        if route.target is not None:
            target = await route.target(server, headers)
            path = path.replace("{target}", target)
        body = route.body
        if route.method == "POST" and route.path == "/v1/users":
            body = {**body, "username": f"made-by-{role}"}
        response = await server.client.request(route.method, path, headers=headers, json=body)
        seen[role] = response.status_code
        if response.status_code >= 400:
            error = response.json()
            assert set(error) == {"error", "details"}
            assert error["error"] == {401: "unauthorized", 403: "forbidden"}.get(
                response.status_code, error["error"]
            )
    assert seen == {role: expected(route, role) for role in ROLES}


async def test_register_needs_no_user(server: Fleet) -> None:
    token = (await server.enrollment())["token"]
    response = await server.client.post(
        "/v1/agent/register", json={"enrollment_token": token, "hardware_id": "hw"}
    )
    assert response.status_code == 200
