"""A cap on request bodies, before they are read into memory.

Every body the API takes is small JSON (the largest, a clipboard text, is 16 MiB at most), so
anything bigger is refused with 413 as soon as its ``Content-Length`` says so, or as soon as a
streamed body passes the cap. The payload of a streamed device action (``PUT
/v1/devices/{id}/media/images/{name}``) is the exception: it goes to the device as it arrives,
never held, so it may be as large as the device takes.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remotehands.protocol.actions import match_route

__all__ = ["MAX_BODY_BYTES", "BodyLimit"]

MAX_BODY_BYTES = 64 * 1024 * 1024


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

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _streamed(scope):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
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
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({
            "error": "invalid",
            "details": f"the request body is over {self.max_bytes} bytes; send less",
        })  # fmt: skip
        headers: list[Any] = [(b"content-type", b"application/json"),
                              (b"content-length", str(len(body)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
