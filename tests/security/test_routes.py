"""Every route of the server, generated from its OpenAPI document and the vocabulary table (so a
new route is covered the day it appears): without credentials, with wrong ones, with too few
rights; security headers on every answer; and schemathesis over /v1 with a bounded number of
examples, none of which may be a server error."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from remotehands.protocol.actions import ACTIONS
from tests.server.conftest import Fleet
from tests.server.link_harness import LiveFleet

pytestmark = pytest.mark.anyio

PUBLIC = {
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/web/signin"),  # the browser's login: the same checks and limits
    ("POST", "/v1/agent/register"),
    ("GET", "/health"),
    ("GET", "/install"),
    ("GET", "/install/remotehands.tar.gz"),
}
"""Routes anyone may call (each guarded otherwise: rate limits, small bodies)."""
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
_PARAM = re.compile(r"{[^}]+}")


def _routes(server: Fleet) -> list[tuple[str, str]]:
    """(method, concrete path) of every HTTP route: the OpenAPI document, the device actions of
    the vocabulary, and the routes left out of the document."""
    found: set[tuple[str, str]] = set()
    for path, item in server.app.openapi()["paths"].items():
        for method, operation in item.items():
            if _is_websocket(operation):
                continue  # not an HTTP route: its socket checks credentials (tests/security)
            found.add((method.upper(), _PARAM.sub("x1", path)))
    for spec in ACTIONS:
        found.add((spec.method, "/v1/devices/dev_x1" + _PARAM.sub("x1", spec.path)))
    found.add(("GET", "/metrics"))
    return sorted(found)


def _is_websocket(operation: dict[str, Any]) -> bool:
    """Whether an operation of the OpenAPI document is a WebSocket (listed as a ``GET``
    answering 101, under the ``websockets`` tag)."""
    return "websockets" in operation.get("tags", [])


def _guarded(server: Fleet) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(server) if (m, p) not in PUBLIC and p not in DOCS]


async def _call(server: Fleet, method: str, path: str, headers: dict[str, str]) -> Any:
    body: dict[str, Any] | None = None if method in ("GET", "DELETE") else {}
    return await server.client.request(method, path, headers=headers, json=body)


async def test_every_route_refuses_missing_and_wrong_credentials(server: Fleet) -> None:
    routes = _guarded(server)
    assert len(routes) > 60  # the document and the vocabulary were both read
    for headers in ({}, {"Authorization": "Bearer rhs_forged"}, {"Authorization": "Basic eA=="}):
        for method, path in routes:
            response = await _call(server, method, path, headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"] == "unauthorized"


async def test_every_write_refuses_a_read_only_token(server: Fleet) -> None:
    token = (await server.token(server.owner, read_only=True))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    # /v1/bulk runs read actions as well: it checks the rights of the action it names
    writes = [(m, p) for m, p in _guarded(server)
              if m != "GET" and not p.startswith("/v1/auth/") and p != "/v1/bulk"]  # fmt: skip
    control = {("/v1/devices/dev_x1" + _PARAM.sub("x1", a.path), a.method)
               for a in ACTIONS if a.access == "read"}  # fmt: skip
    for method, path in writes:
        if (path, method) in control:
            continue  # a read through POST (a screenshot with a body) is a read
        response = await _call(server, method, path, headers)
        assert response.status_code == 403, (method, path, response.text)


async def test_viewers_may_not_control_devices_or_administer(server: Fleet) -> None:
    viewer = await server.headers("viewer")
    device = await server.device("d1", status="online")
    for spec in ACTIONS:
        if spec.access != "control":
            continue
        path = f"/v1/devices/{device}" + _PARAM.sub("x1", spec.path)
        response = await _call(server, spec.method, path, viewer)
        assert response.status_code == 403, (spec.name, response.text)
    for method, path in [("GET", "/v1/audit"), ("GET", "/v1/audit/verify"),
                         ("GET", "/v1/audit/export"), ("POST", "/v1/users"),
                         ("POST", "/v1/devices/enrollment"), ("GET", "/v1/users")]:  # fmt: skip
        response = await _call(server, method, path, viewer)
        assert response.status_code == 403, (method, path, response.text)


async def test_every_answer_carries_the_security_headers(server: Fleet) -> None:
    answers = [await _call(server, m, p, {}) for m, p in _routes(server)]
    answers.append(await server.client.post("/v1/auth/login", content=b"x" * 100_000))  # 413
    answers.append(await server.client.get("/no/such/route"))
    for response in answers:
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "access-control-allow-origin" not in response.headers  # CORS closed


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"allowed_origins": ["https://console.example.com"]}


async def test_cors_opens_only_to_configured_origins(server: Fleet) -> None:
    allowed = {"Origin": "https://console.example.com", "Access-Control-Request-Method": "GET"}
    preflight = await server.client.options("/v1/devices", headers=allowed)
    assert preflight.headers["access-control-allow-origin"] == "https://console.example.com"
    other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    refused = await server.client.options("/v1/devices", headers=other)
    assert "access-control-allow-origin" not in refused.headers


def _fuzz(base_url: str, token: str, examples: int) -> tuple[int, list[str]]:
    """schemathesis over every /v1 operation (but logging out); answers how many requests it
    sent and the server errors."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    document = httpx.get(base_url + "/openapi.json", timeout=10).json()
    sockets = {path for path, item in document["paths"].items()
               if any(_is_websocket(op) for op in item.values())}  # fmt: skip
    errors: list[str] = []
    sent = [0]
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema fails the test here
        if (not operation.path.startswith("/v1") or operation.path == "/v1/auth/logout"
                or operation.path in sockets):  # fmt: skip
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            sent[0] += 1
            if response.status_code >= 500:
                errors.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                              f"{response.text[:200]}")  # fmt: skip

        check()
    return sent[0], errors


@pytest.mark.slow
@pytest.mark.timeout(180)  # some 1,000 requests; on PostgreSQL a loaded machine needs over 30 s
async def test_schemathesis_finds_no_server_error(fleet: LiveFleet) -> None:
    token = await fleet.api_token("admin")
    sent, errors = await asyncio.to_thread(_fuzz, fleet.base_url, token, 15)
    assert sent > 200  # every operation got its examples
    assert errors == []
