"""Every error of the API has the one shape; validation names the field; no tracebacks."""

from __future__ import annotations

import httpx
import pytest

from remotehands.errors import (
    ERRORS,
    ConfigError,
    DeviceError,
    DeviceOfflineError,
    ServiceUnavailableError,
    ValidationError,
    error_class_for_status,
    error_from_wire,
)
from remotehands.server.ratelimit import RateLimitExceeded
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio


async def test_unknown_route_is_404_json(server: Fleet) -> None:
    response = await server.client.get("/v1/nothing/here", headers=server.owner)
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "details": "no route GET /v1/nothing/here; the API lives under /v1",
    }


async def test_wrong_method_is_405_json(server: Fleet) -> None:
    response = await server.client.put("/v1/devices", headers=server.owner)
    assert response.status_code == 405
    assert response.json()["error"] == "invalid"


async def test_validation_names_every_bad_field(server: Fleet) -> None:
    response = await server.client.post(
        "/v1/users", headers=server.owner, json={"password": 5, "role": "king"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid"
    details = body["details"]
    assert "body.username: Field required" in details
    assert "body.password" in details
    assert "body.role" in details


async def test_malformed_json(server: Fleet) -> None:
    response = await server.client.post(
        "/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"


async def test_unexpected_errors_are_500_without_traceback(server: Fleet) -> None:
    @server.app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/test/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal",
        "details": "the server failed unexpectedly; the error is in its log",
    }
    assert "secret internals" not in response.text


def test_one_table_gives_every_map() -> None:
    """Wire code, HTTP status and exit code of each class come from ``ERRORS``, and the
    designed values of STYLE.md hold."""
    designed = {
        "config": (400, 2),
        "unauthorized": (401, 3),
        "forbidden": (403, 3),
        "not_found": (404, 4),
        "invalid": (422, 2),
        "rate_limited": (429, 5),
        "busy": (409, 5),
        "unsupported": (501, 6),
        "device_offline": (503, 7),
        "service_unavailable": (503, 7),
        "device_error": (502, 8),
        "timeout": (504, 9),
    }
    assert {kind.code: (kind.http_status, kind.exit_code) for kind in ERRORS} == designed
    for kind in ERRORS:
        error = error_from_wire(kind.code, "what happened")
        assert type(error) is kind.cls
        assert (error.code, error.http_status, error.exit_code) == (
            kind.code,
            kind.http_status,
            kind.exit_code,
        )
        assert error.to_wire() == {"error": kind.code, "details": "what happened"}
        if kind.cls not in (ConfigError, ServiceUnavailableError):
            assert error_class_for_status(kind.http_status) is kind.cls
    assert len({kind.cls for kind in ERRORS}) == len({kind.code for kind in ERRORS}) == 12
    assert error_class_for_status(503) is DeviceOfflineError
    assert error_class_for_status(400) is ValidationError
    assert error_class_for_status(418) is None
    assert type(error_from_wire("no-such-code", "x")) is DeviceError
    assert RateLimitExceeded.code == "rate_limited"
