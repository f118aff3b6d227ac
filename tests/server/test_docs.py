"""The API documents itself offline: /openapi.json lists every route and every device action
with its schemas and the bearer scheme, and validates; /docs and /redoc load only local files;
GET / is the web console's (tests/server/test_browser_auth.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import RootModel

from remotehands.protocol.actions import ACTIONS
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio


async def _document(server: Fleet) -> dict[str, Any]:
    response = await server.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/")
    schema: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


async def test_the_document_validates_and_lists_every_device_action(server: Fleet) -> None:
    document = await _document(server)
    validate(document)
    paths = document["paths"]
    for spec in ACTIONS:
        operation = paths["/v1/devices/{device_id}" + spec.path][spec.method.lower()]
        assert operation["operationId"] == "device_" + spec.name.replace(".", "_")
        assert operation["security"] == [{"bearer": []}]
        success = operation["responses"][str(spec.status)]
        if spec.status != 204:
            schema = _resolve(document, success["content"]["application/json"]["schema"]["$ref"])
            if issubclass(spec.result, RootModel):  # a list or a value, not an object
                assert schema and "properties" not in schema
            else:
                required = {n for n, f in spec.result.model_fields.items() if f.is_required()}
                assert set(schema["properties"]) >= required
        names = {p["name"] for p in operation["parameters"]}
        assert {"device_id", *spec.path_params} <= names
    click = paths["/v1/devices/{device_id}/mouse/click"]["post"]
    body = _resolve(document, click["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert {"x", "y", "button", "frame_id"} <= set(body["properties"])
    shot = paths["/v1/devices/{device_id}/screenshot"]["get"]
    assert {"format", "quality", "scale"} <= {p["name"] for p in shot["parameters"]}


async def test_every_route_is_listed_with_the_bearer_scheme_where_it_authenticates(
    server: Fleet,
) -> None:
    document = await _document(server)
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    paths = document["paths"]
    for path in (
        "/v1/devices",
        "/v1/users",
        "/v1/tokens",
        "/v1/audit",
        "/v1/bulk",
        "/metrics",
        "/v1/devices/enrollment",
        "/v1/events",
        "/v1/devices/{device_id}/screen/ws",
    ):
        for operation in paths[path].values():
            assert operation["security"] == [{"bearer": []}], path
    for path in ("/health", "/v1/auth/login", "/v1/agent/register", "/v1/agent/ws"):
        for operation in paths[path].values():
            assert "security" not in operation, path
    assert paths["/v1/events"]["get"]["responses"] == {
        "101": {"description": "Switching Protocols: the WebSocket is open"}}  # fmt: skip


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_pages_load_only_local_files(server: Fleet, page: str) -> None:
    response = await server.client.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", response.text)
    assert urls and all(url.startswith("/") for url in urls), urls
    assert "//" not in " ".join(url for url in urls if url != "/openapi.json")
    for url in urls:
        asset = await server.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
