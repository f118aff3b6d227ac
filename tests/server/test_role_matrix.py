"""Every route of the core API against every role: no token, viewer, operator, admin, owner."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

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
    if not headers:
        return (await fleet.token(fleet.owner))["id"]
    return (await fleet.token(headers))["id"]


async def _device(fleet: Fleet, headers: dict[str, str]) -> str:
    return await fleet.device("matrix", ["t"])


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


def expected(route: Route, role: str | None) -> int:
    if route.minimum is None:
        return route.ok
    if role is None:
        return 401
    return route.ok if RANK[role] >= RANK[route.minimum] else 403


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_role_matrix(server: Fleet, route: Route) -> None:
    seen = {}
    for role in ROLES:
        if route.path == "/v1/auth/logout" and role is not None:
            headers = await _fresh_session(server, role)  # logging out ends it
        else:
            headers = await server.headers(role)
        path = route.path
        if route.target is not None:
            path = path.format(target=await route.target(server, headers))
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
