"""The agent's native HTTP face: the desktopkit API, route for route.

Routes are generated from :data:`remotehands.protocol.actions.ACTIONS`; each one validates its
parameters (query string for ``GET``, JSON body otherwise, plus path parameters), checks the
bearer token and hands the action to the :class:`~remotehands.agent.dispatch.Dispatcher`.
Errors are ``{"error": code, "details": text}`` with the status of the error's class. A streamed
action (``PUT /media/images/{name}``) takes its payload as the raw body, handed to the driver as
it arrives. It is the
face named ``native`` (:func:`native_face`); :func:`create_native_app` serves it alone.

It is a plain Starlette app (no FastAPI): the screenshot path is hot and Starlette costs a third
of FastAPI per request (PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from remotehands.agent.auth import TokenStore
from remotehands.agent.dispatch import Dispatcher, validate_params
from remotehands.agent.faces.actions_ws import actions_socket
from remotehands.agent.faces.base import Face, FaceContext
from remotehands.agent.faces.listener import create_listener_app
from remotehands.errors import AuthError, NotFoundError, RemoteHandsError, ValidationError
from remotehands.protocol.actions import ACTIONS, ActionSpec, StreamedParams
from remotehands.protocol.encoding import jsonable
from remotehands.protocol.query import params_from_query
from remotehands.protocol.results import to_wire

__all__ = ["BODY_STALL_S", "body_chunks", "body_size", "create_native_app", "native_face"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
LOGIN_MAX_BODY = 16 * 1024


class _ORJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(err: RemoteHandsError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(err, AuthError) else None
    return _ORJSON(err.to_wire(), status_code=err.http_status, headers=headers)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(
            'missing bearer token: log in with POST /auth/login {"password": ...} and send '
            "Authorization: Bearer <token>"
        )
    return token.strip()


async def _json_body(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    too_large = ValidationError(f"the request body is over {limit} bytes; send less")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():  # capped as it arrives, never read whole first
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ValidationError(f"the body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object")
    return data


Endpoint = Callable[[Request], Awaitable[Response]]


def body_size(request: Request) -> int:
    """The ``Content-Length`` of a streamed body; :class:`ValidationError` without one (the
    device must know the payload's size before the first byte, as a KVM's storage does)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise ValidationError(
            "send the payload's size as Content-Length (a streamed upload cannot be chunked)"
        )
    return int(declared)


BODY_STALL_S = 60.0
"""The longest a streamed body may pause between two pieces before the upload is given up."""


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client that goes away or stalls mid-body is a
    :class:`ValidationError` (so the action fails and what it wrote is dropped)."""
    received = 0
    stream = request.stream()
    try:
        while True:
            async with asyncio.timeout(BODY_STALL_S):
                chunk = await anext(stream, None)
            if chunk is None:
                return
            if chunk:
                received += len(chunk)
                yield chunk
    except ClientDisconnect:
        raise ValidationError(
            f"the client went away after {received} bytes of the upload; nothing was kept"
        ) from None
    except TimeoutError:
        raise ValidationError(
            f"the client sent nothing for {BODY_STALL_S:g} s after {received} bytes of the "
            "upload; nothing was kept"
        ) from None


def create_native_app(dispatcher: Dispatcher, tokens: TokenStore) -> Starlette:
    """The native face of one device alone on a listener, ready for uvicorn."""
    return create_listener_app([_native(dispatcher, tokens)])


def native_face(context: FaceContext) -> Face:
    """The native face of a device (the ``native`` entry of the face table)."""
    return _native(context.dispatcher, context.tokens)


def _native(dispatcher: Dispatcher, tokens: TokenStore) -> Face:

    def guarded(handler: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except RemoteHandsError as err:
                return _error(err)
            except Exception:
                log.exception("unexpected failure in %s %s", request.method, request.url.path)
                return _ORJSON(
                    {"error": "internal", "details": "the agent failed unexpectedly; see its log"},
                    status_code=500,
                )

        return endpoint

    def authed(handler: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            tokens.remaining(_bearer(request))
            return await handler(request)

        return guarded(endpoint)

    def action_endpoint(spec: ActionSpec) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            params = params_from_query(spec, request.query_params.multi_items())
            if spec.method != "GET":
                body = await _json_body(request)
                # query parameters such as lock_timeout_ms may ride along a body
                params = {**params, **body}
            params.update(request.path_params)
            result = await dispatcher.run(spec.name, params)
            if spec.status == 204:
                return Response(status_code=204)
            return _ORJSON(jsonable(result), status_code=spec.status)

        return authed(endpoint)

    def streamed_endpoint(spec: ActionSpec) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            raw = params_from_query(spec, request.query_params.multi_items())
            raw.update(request.path_params)
            raw["size"] = body_size(request)
            params = validate_params(spec, raw)
            assert isinstance(params, StreamedParams)  # the table's streamed rows are
            result = await dispatcher.call(spec.name, params.with_body(body_chunks(request)))
            return _ORJSON(jsonable(to_wire(result)), status_code=spec.status)

        return authed(endpoint)

    async def login(request: Request) -> Response:
        # open to anyone: a password fits in a few KiB, a stranger gets to send no more
        body = await _json_body(request, LOGIN_MAX_BODY)
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise ValidationError('give {"password": "..."} as the JSON body')
        client = request.client.host if request.client else "unknown"
        token, ttl = await tokens.login(password, client)
        return _ORJSON({"token": token, "expires_in_s": ttl})

    async def logout(request: Request) -> Response:
        tokens.logout(_bearer(request))
        return _ORJSON({"status": "ok"})

    async def token_info(request: Request) -> Response:
        remaining = tokens.remaining(_bearer(request))
        return _ORJSON({"valid": True, "remaining_ttl_s": int(remaining)})

    async def health(request: Request) -> Response:
        return _ORJSON({"status": "ok"})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 405:
            return _ORJSON(
                {"error": "invalid", "details": f"{request.method} is not allowed on "
                 f"{request.url.path}"},
                status_code=405,
            )  # fmt: skip
        return _error(NotFoundError(f"no route {request.method} {request.url.path}"))

    routes = [
        Route("/health", guarded(health), methods=["GET"]),
        Route("/auth/login", guarded(login), methods=["POST"]),
        Route("/auth/logout", authed(logout), methods=["POST"]),
        Route("/auth/token-info", authed(token_info), methods=["GET"]),
        # every action over one persistent socket (agent.faces.actions_ws)
        WebSocketRoute("/ws", actions_socket(dispatcher, tokens)),
    ]
    # Routes with the same path but different methods must share one Route object list entry
    # per method; Starlette tries them in order and answers 405 only when none matches.
    routes += [
        Route(
            spec.path,
            streamed_endpoint(spec) if spec.streamed else action_endpoint(spec),
            methods=[spec.method],
            name=spec.name,
        )
        for spec in ACTIONS
        if spec.name != "sleep"
    ]
    return Face(name="native", routes=routes, error_handler=not_found)
