"""A bound on WebSocket handshakes: a WebSocket the app neither accepts nor refuses in time is
closed.

uvicorn hands a WebSocket to the app as soon as its upgrade request arrives and then waits for
the app as long as it takes; a route that waits on something slow (a credential lookup on a
stalled database) would keep the connection, and a crowd of them would keep hundreds. This ASGI
middleware closes any WebSocket not accepted or closed within :data:`HANDSHAKE_TIMEOUT_S`. Past
the accept, the routes bound their own waits (the agent link's hello, the events' sends).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HANDSHAKE_TIMEOUT_S", "HandshakeTimeout"]

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
"""How long a WebSocket may wait between its upgrade request and its accept (or refusal)."""


class HandshakeTimeout:
    """ASGI middleware closing WebSockets left unanswered for ``timeout_s`` (code 1013)."""

    def __init__(self, app: ASGIApp, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        answered = asyncio.Event()

        async def watched_send(message: Message) -> None:
            if message["type"] in ("websocket.accept", "websocket.close",
                                   "websocket.http.response.start"):  # fmt: skip
                answered.set()
            await send(message)

        async def run() -> None:
            await self.app(scope, receive, watched_send)

        task = asyncio.create_task(run())
        waiter = asyncio.create_task(answered.wait())
        try:
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                logger.info("a WebSocket was not answered within %g s; closing it",
                            self.timeout_s)  # fmt: skip
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await send({"type": "websocket.close", "code": 1013,
                            "reason": "handshake timed out"})  # fmt: skip
                return
            await task
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
