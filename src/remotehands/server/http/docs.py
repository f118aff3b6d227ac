"""The API's own documentation: ``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc``,
served from files in the installed packages (no CDN: they work on a machine without internet).

FastAPI describes the routes it knows; this module adds what it cannot see:

- every device action, one operation per row of :data:`~remotehands.protocol.actions.ACTIONS`
  at ``/v1/devices/{device_id}<route>`` (one generic route serves them all, hidden from
  FastAPI), with its parameters (query for ``GET``, a JSON body otherwise) and its result, from
  the row's models;
- the WebSocket routes, as ``GET`` operations answering ``101``;
- the bearer security scheme, required by every operation whose route authenticates.

``GET /`` is the web console's (:mod:`~remotehands.server.http.web_routes`), no longer a redirect
to ``/docs``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi_offline import FastAPIOffline
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute

from remotehands.protocol.actions import ACTIONS, ActionSpec

__all__ = ["ASSETS_URL", "DOCS_URL", "SECURITY_SCHEME", "docs_app", "openapi_document"]

DOCS_URL = "/docs"
"""Where the Swagger UI is served (the web console links to it)."""
ASSETS_URL = "/docs/assets"
"""Where the Swagger UI and ReDoc scripts and styles are served from."""
SECURITY_SCHEME = "bearer"
"""The name of the security scheme in ``components.securitySchemes``."""

_REF = "#/components/schemas/{model}"
_ERROR = {
    "type": "object",
    "title": "Error",
    "properties": {
        "error": {"type": "string", "description": "The stable error code, e.g. not_found."},
        "details": {"type": "string", "description": "What went wrong and what to do."},
    },
    "required": ["error", "details"],
}
_ERROR_RESPONSE = {
    "description": "An error: 401, 403, 404, 409, 422, 429, 501, 502, 503 or 504",
    "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
}


def docs_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app with offline ``/docs`` and ``/redoc`` and the full OpenAPI document;
    ``kwargs`` go to FastAPI."""
    app = FastAPIOffline(docs_url=DOCS_URL, redoc_url="/redoc", static_url=ASSETS_URL, **kwargs)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app``, device actions, WebSockets and security included."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description="Log in with `POST /v1/auth/login` or create an API token at `/v1/tokens`, "
        "then send `Authorization: Bearer <token>`.",
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A session token (rhs_...) from /v1/auth/login or an API token "
            "(rht_...) from /v1/tokens.",
        }
    }
    paths: dict[str, dict[str, Any]] = document.setdefault("paths", {})
    for route in _flat_routes(app.routes):
        if isinstance(route, APIRoute) and route.include_in_schema and _authenticates(route):
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    operation["security"] = [{SECURITY_SCHEME: []}]
        elif isinstance(route, APIWebSocketRoute):
            operation = _websocket_operation(route)
            if _authenticates(route):
                operation["security"] = [{SECURITY_SCHEME: []}]
            paths.setdefault(route.path_format, {})["get"] = operation
    refs, defs = _action_schemas()
    schemas.update(defs)
    schemas["Error"] = _ERROR
    for spec in ACTIONS:
        path = "/v1/devices/{device_id}" + spec.path
        paths.setdefault(path, {})[spec.method.lower()] = _action_operation(spec, refs, defs)
    return document


def _flat_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too: newer FastAPI keeps an included router as one
    entry holding the original (our routers are included without a prefix, so its paths are
    the app's)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat_routes(included.routes)
        else:
            yield route


def _authenticates(route: APIRoute | APIWebSocketRoute) -> bool:
    # Every authenticated route depends on the closure made by auth.require_role; its name is
    # the one mark it carries.
    def marked(dependant: Dependant) -> bool:
        return getattr(dependant.call, "__qualname__", "").startswith("require_role.") or any(
            marked(sub) for sub in dependant.dependencies
        )

    return marked(route.dependant)


def _websocket_operation(route: APIWebSocketRoute) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or "").strip()
    return {
        "tags": ["websockets"],
        "summary": f"WebSocket: {doc.splitlines()[0] if doc else route.name}",
        "description": doc,
        "operationId": f"websocket_{route.name}",
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors
        ],
        "responses": {"101": {"description": "Switching Protocols: the WebSocket is open"}},
    }


_Refs = dict[tuple[Any, JsonSchemaMode], Any]


def _action_schemas() -> tuple[_Refs, dict[str, Any]]:
    """The ``$ref`` of every action's parameter and result model, and their schemas (one
    pass, so that a model used both ways gets one name per mode)."""
    # Results too in validation mode: their serializer (which leaves out unset optional keys)
    # hides the fields from pydantic's serialization schema; the fields are the same.
    models: list[tuple[Any, JsonSchemaMode]] = []
    for spec in ACTIONS:
        models += [(spec.params, "validation"), (spec.result, "validation")]
    refs, top = models_json_schema(list(dict.fromkeys(models)), ref_template=_REF)
    return dict(refs), dict(top.get("$defs", {}))


def _action_operation(spec: ActionSpec, refs: _Refs, defs: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("device_id", *spec.path_params)
    ]
    operation: dict[str, Any] = {
        "tags": ["device actions"],
        "summary": spec.summary,
        "description": f"The action `{spec.name}` (SDK `device.{spec.sdk_method}()`, CLI "
        f"`remotehands {spec.cli_command}`). Needs the {spec.access} access.",
        "operationId": "device_" + spec.name.replace(".", "_"),
        "parameters": parameters,
        "security": [{SECURITY_SCHEME: []}],
    }
    fields = {k: v for k, v in spec.params.model_fields.items() if k not in spec.path_params}
    if spec.method == "GET":
        model_name = refs[(spec.params, "validation")]["$ref"].rsplit("/", 1)[1]
        schema = defs[model_name]
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            if name in fields:
                parameters.append({"name": name, "in": "query", "required": name in required,
                                   "schema": prop})  # fmt: skip
    elif fields:
        operation["requestBody"] = {
            "required": any(f.is_required() for f in fields.values()),
            "content": {"application/json": {"schema": refs[(spec.params, "validation")]}},
        }
    if spec.status == 204:
        success: dict[str, Any] = {"description": "Done (no body)"}
    else:
        success = {
            "description": "The agent's answer",
            "content": {"application/json": {"schema": refs[(spec.result, "validation")]}},
        }
    operation["responses"] = {str(spec.status): success, "default": _ERROR_RESPONSE}
    return operation
