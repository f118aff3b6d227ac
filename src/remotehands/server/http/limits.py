"""A cap on request bodies, before they are read into memory.

Every body the API takes is small JSON (the largest, a clipboard text, is 16 MiB at most), so
anything bigger is refused with 413 as soon as its ``Content-Length`` says so, or as soon as a
streamed body passes the cap. The payload of a streamed device action (``PUT
/v1/devices/{id}/media/images/{name}``) is the exception: it goes to the device as it arrives,
never held, so it may be as large as the device takes. Routes anyone may call without
credentials (logging in, registering an agent) take far smaller bodies
(:data:`UNAUTHENTICATED_PATHS`): nobody unknown gets to make the server hold megabytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remotehands.protocol.actions import match_route

__all__ = ["MAX_BODY_BYTES", "SMALL_BODY_BYTES", "UNAUTHENTICATED_PATHS", "BodyLimit"]

MAX_BODY_BYTES = 64 * 1024 * 1024
SMALL_BODY_BYTES = 16 * 1024
"""The cap of a body sent without credentials: a username, a password, a code, a token."""
UNAUTHENTICATED_PATHS: Mapping[str, int] = {
    "/v1/auth/login": SMALL_BODY_BYTES,
    "/v1/agent/register": SMALL_BODY_BYTES,
}
"""Routes open to anyone, and their body caps."""


class _TooLarge(BaseException):
    """Raised from ``receive`` when a streamed body passes the cap. A BaseException on purpose:
    FastAPI turns any Exception met while reading a body into its own 400, and this must reach
    the middleware to become a 413."""


_DEVICES = "/v1/devices/"


def _streamed(scope: Scope) -> bool:
    """Whether the request is a streamed device action (its body is a payload, not JSON)."""
    path: str = scope.get("path", "")
    if not path.startswith(_DEVICES):
        return False
    _, _, rest = path[len(_DEVICES) :].partition("/")
    found = match_route(scope.get("method", ""), "/" + rest)
    return found is not None and found[0].streamed


class BodyLimit:
    """ASGI middleware answering 413 ``{"error": "invalid", ...}`` for oversized bodies."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        small: Mapping[str, int] = UNAUTHENTICATED_PATHS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.small = dict(small)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _streamed(scope):
            await self.app(scope, receive, send)
            return
        cap = min(self.max_bytes, self.small.get(scope["path"].rstrip("/"), self.max_bytes))
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > cap:
                await self._refuse(send, cap)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, cap)

    async def _refuse(self, send: Send, cap: int) -> None:
        body = orjson.dumps({
            "error": "invalid",
            "details": f"the request body is over {cap} bytes; send less",
        })  # fmt: skip
        headers: list[Any] = [(b"content-type", b"application/json"),
                              (b"content-length", str(len(body)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
