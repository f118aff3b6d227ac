"""Where errors leave the REST API: every one becomes ``{"error": code, "details": text}``.

- :class:`~remotehands.errors.RemoteHandsError` -> its ``http_status`` and ``code``
  (``Retry-After`` on rate limits);
- a WebSocket refused by :func:`~remotehands.server.auth.require_role` -> the same JSON
  answer instead of the handshake, or a 4401/4403 close;
- request validation -> 422 ``invalid``, naming each bad field (``body.username: Field
  required``);
- unknown routes -> 404 ``not_found``, wrong methods -> 405 ``invalid``;
- the database failing (full, read-only, unreachable) -> 503 ``unavailable`` saying which and
  what to do, with ``Retry-After``;
- anything else -> 500 ``internal``, logged with its traceback, never sent to the client.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from remotehands.errors import RemoteHandsError, ValidationError, error_class_for_status
from remotehands.protocol.validation import describe_errors
from remotehands.server.auth import WebSocketRefused
from remotehands.server.db.storage import is_storage_error, storage_problem
from remotehands.server.ratelimit import RateLimitExceeded

__all__ = ["error_response", "install_error_handlers"]

logger = logging.getLogger(__name__)


def _code_of_status(status: int) -> str:
    """The wire code of an HTTP error raised by the framework (unknown route, wrong method, body
    too large...): that of the error class of the status for a 4xx (see
    :func:`~remotehands.errors.error_class_for_status`), ``invalid`` for other 4xx, ``internal``
    for 5xx (a framework's 5xx is the server's own failure, not a device's)."""
    if status >= 500:
        return "internal"
    cls = error_class_for_status(status)
    return cls.code if cls is not None else ValidationError.code


def error_response(
    status: int, code: str, details: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error shape of the native API."""
    return JSONResponse({"error": code, "details": details}, status_code=status, headers=headers)


async def _remotehands_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RemoteHandsError)
    headers = None
    if isinstance(exc, RateLimitExceeded):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return error_response(exc.http_status, exc.code, exc.details, headers)


async def _websocket_refused(websocket: WebSocket, exc: Exception) -> None:
    assert isinstance(exc, WebSocketRefused)
    error = exc.error
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = error_response(error.http_status, error.code, error.details)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=exc.code, reason=exc.reason)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid", describe_errors(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found":
        details = f"no route {request.method} {request.url.path}; the API lives under /v1"
    elif exc.status_code == 405:
        details = f"{request.method} is not allowed on {request.url.path}"
    else:
        details = str(exc.detail)
    code = _code_of_status(exc.status_code)
    return error_response(exc.status_code, code, details, dict(exc.headers or {}))


STORAGE_RETRY_AFTER_S = 30
"""What a client that met a failing database is told to wait."""


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if "invalid byte sequence" in str(exc):
        # PostgreSQL refuses text with NUL characters, which JSON allows: the request's fault
        details = "text may not contain NUL (\\u0000) characters; remove them"
        return error_response(422, "invalid", details)
    if is_storage_error(exc):
        problem = storage_problem(exc)
        logger.error("%s %s: %s (%s)", request.method, request.url.path, problem, exc)
        return error_response(503, "unavailable", problem,
                              {"Retry-After": str(STORAGE_RETRY_AFTER_S)})  # fmt: skip
    logger.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, "internal", "the server failed unexpectedly; the error is in its log"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RemoteHandsError, _remotehands_error)
    app.add_exception_handler(WebSocketRefused, _websocket_refused)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
