"""The web console's pages and files.

- ``GET /``: the fleet dashboard; ``/signin``: the sign-in page; ``/console/{device_id}``: the live
  console of one device; ``/admin``: administration. A page other than the sign-in page, asked for
  without a valid session cookie, redirects to ``/signin?next=<the page>``, so that signing in
  returns to it.
- ``/static/...``: the HTML, CSS and JavaScript modules of
  :data:`~remotehands.server.web.STATIC_DIR`, answered with ``Cache-Control: no-cache`` (the
  browser revalidates with the ETag, so an upgraded server's files are used at once, and an
  unchanged file costs a 304).

The Content-Security-Policy of :mod:`~remotehands.server.http.headers` applies to all of them: no
inline script, nothing from another host.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from remotehands.errors import RemoteHandsError
from remotehands.server.auth.browser import session_cookie
from remotehands.server.services import get_services
from remotehands.server.web import STATIC_DIR

__all__ = ["STATIC_URL", "router", "safe_next", "static_files"]

STATIC_URL = "/static"
"""Where the web console's files are served."""

router = APIRouter(include_in_schema=False)


class _NoCacheStatic(StaticFiles):
    """Static files that the browser revalidates each time (ETag/If-None-Match)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def no_cache(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"cache-control", b"no-cache")]}  # fmt: skip
            await send(message)

        await super().__call__(scope, receive, no_cache)


def static_files() -> StaticFiles:
    """The ASGI app serving :data:`~remotehands.server.web.STATIC_DIR` (mount at
    :data:`STATIC_URL`)."""
    return _NoCacheStatic(directory=STATIC_DIR)


_PAGE_HEADERS = {"cache-control": "no-cache"}


async def _signed_in(request: Request) -> bool:
    token = session_cookie(request)
    if token is None:
        return False
    try:
        await get_services(request).authenticator.principal(token)
    except RemoteHandsError:
        return False
    return True


async def _page(request: Request, path: str) -> Response:
    if not await _signed_in(request):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(here, safe='')}", status_code=303)
    return FileResponse(STATIC_DIR / path, media_type="text/html", headers=_PAGE_HEADERS)


@router.get("/")
async def dashboard(request: Request) -> Response:
    """The fleet dashboard."""
    return await _page(request, "index.html")


@router.get("/admin")
async def admin(request: Request) -> Response:
    """Administration: enrollment, users, API tokens, the audit log."""
    return await _page(request, "admin.html")


@router.get("/console/{device_id}")
async def console(request: Request, device_id: str) -> Response:
    """The live console of one device."""
    del device_id  # the page reads it from its own address
    return await _page(request, "console/index.html")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: ``value`` when it is a path of this server, else ``/``
    (never another site: ``//host``, ``/\\host`` and absolute URLs are refused)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 for c in value) or value.split("?", 1)[0] == "/signin":
        return "/"
    return value


@router.get("/signin")
async def signin(request: Request) -> Response:
    """The sign-in page; a browser signed in already goes on to ``next`` (or ``/``)."""
    if await _signed_in(request):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return FileResponse(STATIC_DIR / "signin.html", media_type="text/html",
                        headers=_PAGE_HEADERS)  # fmt: skip
