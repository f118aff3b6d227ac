"""The agent link endpoint: ``/v1/agent/ws``, served on raw ASGI.

An agent dials it with ``Authorization: Bearer agt_...``. Ten thousand of these stay open for
days, so each must cost little: :class:`AgentLinkRoute`, the outermost middleware of the app,
takes the link's WebSockets straight to :func:`serve_agent_link` on the ASGI messages, past
FastAPI's per-connection machinery (a coroutine frame per middleware and an extra task per
WebSocket held for the link's life, dependency solving, a Starlette ``WebSocket``). TLS and the
trusted-proxy handling are uvicorn's, below the app, so they apply as before; the FastAPI route
of the same path stays for the API documentation, and serves the same function should the app
be mounted without the middleware.

A link is admitted (:class:`~remotehands.server.admission.Admission`) before it is accepted: a
crowd past the admission's queue is answered ``503`` with ``Retry-After`` (the agent comes back
then). Admitted, the endpoint checks the credential, accepts the WebSocket (close codes need an
accepted socket), reads the hello and hands the connection to
:meth:`remotehands.server.link.hub.LinkHub.serve`, which lets the next agent in once the device
is marked online. A refused credential closes with
:data:`~remotehands.protocol.link.CLOSE_CREDENTIAL_REFUSED`, a bad hello with
:data:`~remotehands.protocol.link.CLOSE_PROTOCOL_ERROR`; nothing an agent sends reaches past
this module as an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

import orjson
import pydantic
from fastapi import APIRouter, WebSocket
from starlette.types import ASGIApp, Receive, Scope, Send

from remotehands.errors import DeviceOfflineError, ValidationError
from remotehands.protocol.link import (
    CLOSE_CREDENTIAL_REFUSED,
    CLOSE_PROTOCOL_ERROR,
    LINK_PATH,
    Hello,
    decode,
)
from remotehands.server.admission import AdmissionFull, Ticket
from remotehands.server.link.hub import LinkIdentity
from remotehands.server.services import Services
from remotehands.serving import DIRECT_FRAMES

__all__ = [
    "HELLO_TIMEOUT_S",
    "MAX_HELLO_BYTES",
    "AgentLinkRoute",
    "AsgiTransport",
    "router",
    "serve_agent_link",
]

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
"""How long a fresh link may take to authenticate and say hello."""
MAX_HELLO_BYTES = 256 * 1024
"""The largest hello taken: ids, capabilities and a few screens fit in a few KiB."""
_CLOSE_INTERNAL = 1011

router = APIRouter()


class AsgiTransport:
    """A WebSocket's ASGI ``receive`` and ``send`` as a
    :class:`~remotehands.server.link.hub.LinkTransport`: foreign errors of a gone connection
    become :class:`~remotehands.errors.DeviceOfflineError` (on send) or the end (on receive)."""

    __slots__ = ("_deliver", "_gone", "_receive", "_send", "_send_now")

    def __init__(self, receive: Receive, send: Send, scope: Scope | None = None) -> None:
        self._receive = receive
        self._send = send
        self._gone = False
        # the server's WebSocket protocol (remotehands.serving) offers both; another leaves the
        # frames to receive() and every send to the link's lock and deadline
        extension = (scope or {}).get("extensions", {}).get(DIRECT_FRAMES) or {}
        self._deliver: Callable[[Callable[[str | bytes], None] | None], None] | None = (
            extension.get("deliver")
        )
        self._send_now: Callable[[str | bytes], bool] | None = extension.get("send")

    async def accept(self) -> bool:
        """Accept the WebSocket (no subprotocol, no extra header); False when the agent has
        gone already (it gave up waiting)."""
        try:
            await self._send({"type": "websocket.accept"})
        except (RuntimeError, OSError):  # uvicorn: ClientDisconnected
            self._gone = True
            return False
        return True

    async def refuse(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        """Answer the upgrade request with an HTTP error instead of accepting it (uvicorn's
        ``websocket.http.response`` extension; without it, a bare refusal: 403)."""
        self._gone = True
        with contextlib.suppress(RuntimeError, OSError):
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                    ],
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": orjson.dumps(body)})

    async def send(self, frame: str | bytes) -> None:
        message = (
            {"type": "websocket.send", "text": frame}
            if isinstance(frame, str)
            else {"type": "websocket.send", "bytes": frame}
        )
        try:
            await self._send(message)
        except (RuntimeError, OSError) as err:  # uvicorn: ClientDisconnected, or sent after close
            raise DeviceOfflineError("the agent's link is closed") from err

    def deliver(self, on_frame: Callable[[str | bytes], None] | None) -> bool:
        if self._deliver is None or self._gone:
            return False
        self._deliver(on_frame)
        return True

    def send_now(self, frame: str | bytes) -> bool:
        if self._send_now is None or self._gone:
            return False
        try:
            return self._send_now(frame)
        except (ConnectionError, RuntimeError, OSError) as err:
            raise DeviceOfflineError("the agent's link is closed") from err

    async def receive(self) -> str | bytes | None:
        if self._gone:
            return None
        try:
            message = await self._receive()
        except (RuntimeError, OSError):
            self._gone = True
            return None
        if message["type"] != "websocket.receive":  # websocket.disconnect
            self._gone = True
            return None
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes | None = message.get("bytes")
        return data if data is not None else ""

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header: str = bytes(value).decode("latin-1")
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                return None
            return credential.strip()
    return None


async def _handshake(
    services: Services, scope: Scope, transport: AsgiTransport
) -> tuple[LinkIdentity, Hello] | None:
    """Who the agent is and its hello, or None after closing the link with the reason."""
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            credential = _bearer(scope)
            device = await services.authenticator.agent(credential) if credential else None
            if not await transport.accept():
                return None
            if device is None:
                await transport.close(CLOSE_CREDENTIAL_REFUSED, "device credential refused")
                return None
            frame = await transport.receive()
            if frame is None:
                return None
            if len(frame) > MAX_HELLO_BYTES:
                raise ValidationError(
                    f"the hello is {len(frame)} bytes, over {MAX_HELLO_BYTES}: send less"
                )
            message = decode(frame)
            if message["type"] != "hello":
                raise ValidationError(
                    f"the first link message must be hello, not {message['type']!r}"
                )
            hello = Hello.model_validate(message)
    except TimeoutError:
        await transport.close(CLOSE_PROTOCOL_ERROR, f"no hello within {HELLO_TIMEOUT_S:g} s")
        return None
    except (ValidationError, pydantic.ValidationError) as err:
        logger.warning("agent link: bad hello, closing: %s", err)
        reason = err.details if isinstance(err, ValidationError) else "invalid hello"
        await transport.close(CLOSE_PROTOCOL_ERROR, reason[:120])
        return None
    if hello.device_id and hello.device_id != device.id:
        await transport.close(
            CLOSE_CREDENTIAL_REFUSED,
            f"this credential belongs to {device.id}, not {hello.device_id}",
        )
        return None
    return LinkIdentity.of(device), hello


async def serve_agent_link(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """One agent's link, from the upgrade request to the close, on raw ASGI."""
    transport = AsgiTransport(receive, send, scope)
    if (await receive())["type"] != "websocket.connect":
        return
    ticket: Ticket | None = None
    try:
        try:
            ticket = await services.admission.enter("connect")
        except AdmissionFull as err:
            retry = str(max(1, math.ceil(err.retry_after_s)))
            if "websocket.http.response" in scope.get("extensions", {}):
                await transport.refuse(503, err.to_wire(), {"Retry-After": retry})
            else:
                await transport.close(1013, f"server busy; retry_after_ms={int(retry) * 1000}")
            return
        opened = await _handshake(services, scope, transport)
        if opened is not None:
            # the link lives for days, and its upgrade request's headers (a kilobyte) are of no
            # use after the handshake: not kept for it (the server's log lines use the
            # client's address and the path, not the headers)
            scope["headers"] = []
            served = services.hub.serve(*opened, transport, attached=ticket.release)
            opened = None  # the link keeps what it needs of the hello, this frame none of it
            await served
    except Exception:
        # A database outage or a bug must end this link only, never the server.
        logger.exception("agent link failed")
        await transport.close(_CLOSE_INTERNAL, "server error")
    finally:
        if ticket is not None:
            ticket.release()


class AgentLinkRoute:
    """ASGI middleware taking ``/v1/agent/ws`` WebSockets to :func:`serve_agent_link`;
    everything else goes on to ``app``.

    As the app's outermost middleware it finds the services in ``scope["app"].state``; given
    the ``fleet`` app itself, it can wrap that app from the outside (what ``remotehands
    server`` serves), so that a link holds no frame of FastAPI's own layers either."""

    def __init__(self, app: ASGIApp, fleet: Any = None) -> None:
        self.app = app
        self.fleet = fleet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == LINK_PATH:
            fleet = self.fleet if self.fleet is not None else scope["app"]
            await serve_agent_link(fleet.state.services, scope, receive, send)
        else:
            await self.app(scope, receive, send)


@router.websocket(LINK_PATH)
async def agent_link(websocket: WebSocket) -> None:
    """One agent's link, from handshake to close.

    The agent sends ``Authorization: Bearer agt_...``, then a ``hello``; the server answers
    ``welcome`` with the heartbeat interval it wants. A crowd of agents past the server's
    admission queue is answered ``503`` with ``Retry-After``."""
    services: Services = websocket.app.state.services
    await serve_agent_link(services, websocket.scope, websocket.receive, websocket.send)
