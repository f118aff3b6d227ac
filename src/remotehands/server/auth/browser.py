"""Browser sessions: the session token in a cookie, and what keeps other sites from using it.

A browser signs in with ``POST /v1/auth/web/signin`` and gets two cookies:

- :data:`SESSION_COOKIE` (``rh_session``): the same session token (``rhs_...``) that
  ``POST /v1/auth/login`` answers to API clients, ``HttpOnly`` (no script reads it),
  ``SameSite=Strict``, ``Path=/``, and ``Secure`` when the request came over HTTPS;
- :data:`CSRF_COOKIE` (``rh_csrf``): readable by the page's scripts, ``SameSite=Strict``,
  ``Path=/``; its value is :func:`csrf_token` of the session, an HMAC keyed by the session token,
  so that nobody without the session can make one and a cookie planted by another site (a
  sibling subdomain) does not match.

Every route that takes ``Authorization: Bearer`` takes the session cookie when there is no
such header (:func:`~remotehands.server.auth.dependencies.request_credential`). A request
authenticated by the cookie with a method other than GET, HEAD or OPTIONS must carry the header
:data:`CSRF_HEADER` equal to the session's CSRF value (:func:`check_csrf`): another site's page can
make the browser send the cookie (not with ``SameSite=Strict``, but older browsers and
same-site pages can), but it cannot read ``rh_csrf`` to set the header. A WebSocket
authenticated by the cookie must come from a page of the server's own origin, and one with no
``Origin`` at all is refused (browsers always send it).
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import HTTPConnection
from starlette.responses import Response

from remotehands.errors import ForbiddenError

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "check_csrf",
    "clear_session_cookies",
    "csrf_token",
    "is_https",
    "session_cookie",
    "set_session_cookies",
]

SESSION_COOKIE = "rh_session"
"""The cookie holding the browser's session token (HttpOnly)."""
CSRF_COOKIE = "rh_csrf"
"""The cookie holding the session's CSRF value, for the page's scripts to copy into
:data:`CSRF_HEADER`."""
CSRF_HEADER = "X-CSRF-Token"
"""The header a state-changing request authenticated by the session cookie must carry."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing, so need no CSRF header."""

_CSRF_LABEL = b"remotehands browser session csrf v1"


def csrf_token(session_token: str) -> str:
    """The CSRF value of a session: an HMAC of a fixed label keyed by the session token, so it
    is bound to the session and reveals nothing of it."""
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def session_cookie(conn: HTTPConnection) -> str | None:
    """The session token of the :data:`SESSION_COOKIE` cookie, if the request has one."""
    value = conn.cookies.get(SESSION_COOKIE)
    return value.strip() or None if value else None


def check_csrf(conn: HTTPConnection, session_token: str) -> None:
    """Refuse (:class:`ForbiddenError`, 403) a state-changing HTTP request authenticated by the
    session cookie whose :data:`CSRF_HEADER` does not match the session."""
    if conn.scope["type"] != "http" or conn.scope["method"] in SAFE_METHODS:
        return
    sent = conn.headers.get(CSRF_HEADER)
    if not sent:
        raise ForbiddenError(
            f"csrf_missing: a request signed in by the browser cookie must send the "
            f"{CSRF_HEADER} header (the value of the {CSRF_COOKIE} cookie); API clients send "
            "'Authorization: Bearer <token>' instead"
        )
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        raise ForbiddenError(
            f"csrf_mismatch: the {CSRF_HEADER} header does not belong to this session; "
            "reload the page (or sign in again) and retry"
        )


def is_https(conn: HTTPConnection) -> bool:
    """Whether the request came over HTTPS (directly, or through a trusted proxy the ASGI
    server takes ``X-Forwarded-Proto`` from)."""
    return conn.url.scheme in ("https", "wss")


def set_session_cookies(
    response: Response, session_token: str, *, max_age_s: int, secure: bool
) -> None:
    """Put the session and its CSRF value in the browser's cookies."""
    response.set_cookie(
        SESSION_COOKIE, session_token, max_age=max_age_s, path="/", secure=secure,
        httponly=True, samesite="strict",
    )  # fmt: skip
    response.set_cookie(
        CSRF_COOKIE, csrf_token(session_token), max_age=max_age_s, path="/", secure=secure,
        httponly=False, samesite="strict",
    )  # fmt: skip


def clear_session_cookies(response: Response, *, secure: bool) -> None:
    """Remove both cookies from the browser."""
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True,
                           samesite="strict")  # fmt: skip
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, httponly=False,
                           samesite="strict")  # fmt: skip
