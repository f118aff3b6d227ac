"""The HTTP side of authentication: reading the bearer credential of a request or WebSocket,
and the FastAPI dependencies that refuse callers without the role a route needs.

HTTP routes authenticate with ``Authorization: Bearer ...``; WebSocket routes may pass
``?token=...`` instead (browsers cannot set headers on a WebSocket). Without either, the browser's
session cookie is taken (:mod:`~remotehands.server.auth.browser`), with its own rules: a
state-changing request must carry the CSRF header, and a WebSocket must come from the server's
own origin (a missing ``Origin`` is refused too). A browser opens a WebSocket
to any site a page asks for, so a WebSocket whose ``Origin`` is neither the server's own nor an
allowed origin is refused (403) before its credential is looked at (:func:`check_origin`).
A refused WebSocket gets the same 401/403 JSON answer as HTTP when the ASGI server can send one
instead of the handshake (uvicorn can), or else is closed with code 4401 (unauthorized) or 4403
(forbidden).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Depends, WebSocketException
from starlette.requests import HTTPConnection

from remotehands.errors import AuthError, ForbiddenError, RemoteHandsError
from remotehands.server.auth.browser import check_csrf, session_cookie
from remotehands.server.auth.principals import ROLES, Principal, require_writable, role_rank

if TYPE_CHECKING:
    from remotehands.server.services import Services

__all__ = [
    "WS_CLOSE_FORBIDDEN",
    "WS_CLOSE_UNAUTHORIZED",
    "WebSocketRefused",
    "check_origin",
    "client_ip",
    "credential_from_cookie",
    "request_credential",
    "require_role",
]

WS_CLOSE_UNAUTHORIZED = 4401
"""WebSocket close code for missing or bad credentials."""
WS_CLOSE_FORBIDDEN = 4403
"""WebSocket close code for credentials that do not allow the route."""


def client_ip(conn: HTTPConnection) -> str:
    """The caller's address (as the ASGI server reports it, after trusted proxy headers)."""
    return conn.client.host if conn.client is not None else "unknown"


def check_origin(conn: HTTPConnection, allowed: Sequence[str], public_url: str) -> None:
    """Raise :class:`ForbiddenError` when the connection comes from a web page of another
    origin: one not the same as the host it asked for, not ``public_url``'s, not in
    ``allowed``. Clients that are not browsers send no ``Origin`` and pass."""
    origin = conn.headers.get("origin")
    if origin is None:
        return
    origin = origin.rstrip("/")
    scheme, _, host = origin.partition("://")
    own = public_url.rstrip("/").split("/", 3)
    if origin in allowed or origin == "/".join(own[:3]):
        return
    if scheme in ("http", "https") and host and host == conn.headers.get("host"):
        return
    raise ForbiddenError(
        f"origin {origin} may not open this WebSocket; the server's operator can allow it "
        "with allowed_origins"
    )


def _services(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def request_credential(conn: HTTPConnection) -> str:
    """The bearer token of a request (or, for a WebSocket, of its ``?token=``), else the
    browser's session cookie; raises :class:`AuthError` when there is none."""
    return _credential(conn)[0]


def credential_from_cookie(conn: HTTPConnection) -> bool:
    """Whether the request is authenticated by the browser's session cookie (it has no
    ``Authorization`` header, no WebSocket ``?token=``, and the cookie)."""
    try:
        return _credential(conn)[1]
    except AuthError:
        return False


def _credential(conn: HTTPConnection) -> tuple[str, bool]:
    """The credential of a request and whether it came from the session cookie."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        return value.strip(), False
    if conn.scope["type"] == "websocket":
        token = conn.query_params.get("token")
        if token:
            return token, False
    cookie = session_cookie(conn)
    if cookie is not None:
        return cookie, True
    raise AuthError(
        "this needs a token: log in with POST /v1/auth/login or create an API token, then send "
        "'Authorization: Bearer <token>' (a browser signs in at /signin)"
    )


class WebSocketRefused(WebSocketException):
    """A WebSocket refused before it was accepted; :mod:`remotehands.server.http.errors`
    answers it (a 401/403 response, or a 4401/4403 close)."""

    def __init__(self, error: RemoteHandsError) -> None:
        code = WS_CLOSE_UNAUTHORIZED if isinstance(error, AuthError) else WS_CLOSE_FORBIDDEN
        super().__init__(code=code, reason=error.details[:120])
        self.error = error


def require_role(role: str, *, writes: bool = False) -> Any:
    """A FastAPI dependency (``Depends``) that authenticates the caller and returns its
    :class:`Principal`, refusing roles below ``role`` (403) and, when the route ``writes``
    (changes users, tokens or devices), read-only tokens."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    async def dependency(conn: HTTPConnection) -> Principal:
        try:
            credential, cookie = _credential(conn)
            if conn.scope["type"] == "websocket":
                settings = _services(conn).settings
                if cookie and conn.headers.get("origin") is None:
                    raise ForbiddenError(
                        "a WebSocket signed in by the browser cookie must send an Origin header "
                        "(browsers do); other clients send a token instead"
                    )
                # The cookie is for the server's own pages only: allowed_origins admit other
                # sites' pages that bring a token of their own.
                allowed = () if cookie else settings.allowed_origins
                check_origin(conn, allowed, settings.base_url)
            principal = await _services(conn).authenticator.principal(credential)
            if cookie:
                check_csrf(conn, credential)
            if principal.second_factor_missing and not conn.url.path.startswith("/v1/auth/"):
                raise ForbiddenError(
                    f"the {principal.role} role needs two-factor sign-in: enable it first with "
                    "`remotehands users totp enable` (POST /v1/auth/totp/enroll, then confirm)"
                )
            if principal.rank < role_rank(role):
                raise ForbiddenError(
                    f"this needs the {role} role or higher; "
                    f"{principal.username} acts as {principal.role}"
                )
            if writes:
                require_writable(principal)
        except RemoteHandsError as err:
            if conn.scope["type"] == "websocket":
                raise WebSocketRefused(err) from err
            raise
        return principal

    return Depends(dependency)
