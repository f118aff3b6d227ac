"""The agent link endpoint: ``/v1/agent/ws``.

An agent dials it with ``Authorization: Bearer agt_...``. The endpoint accepts the WebSocket
(close codes need an accepted socket), checks the credential, reads the hello and hands the
connection to :meth:`remotehands.server.link.hub.LinkHub.serve`. A refused credential closes with
:data:`~remotehands.protocol.link.CLOSE_CREDENTIAL_REFUSED`, a bad hello with
:data:`~remotehands.protocol.link.CLOSE_PROTOCOL_ERROR`; nothing an agent sends reaches past
this module as an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pydantic
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from remotehands.errors import DeviceOfflineError, ValidationError
from remotehands.protocol.link import (
    CLOSE_CREDENTIAL_REFUSED,
    CLOSE_PROTOCOL_ERROR,
    LINK_PATH,
    Hello,
    decode,
)
from remotehands.server.link.hub import LinkIdentity
from remotehands.server.services import Services, get_services

__all__ = ["HELLO_TIMEOUT_S", "MAX_HELLO_BYTES", "StarletteTransport", "router"]

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
"""How long a fresh link may take to authenticate and say hello."""
MAX_HELLO_BYTES = 256 * 1024
"""The largest hello taken: ids, capabilities and a few screens fit in a few KiB."""
_CLOSE_INTERNAL = 1011

router = APIRouter()


class StarletteTransport:
    """A Starlette WebSocket as a :class:`~remotehands.server.link.hub.LinkTransport`: foreign
    errors of a gone connection become :class:`~remotehands.errors.DeviceOfflineError`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def send(self, frame: str | bytes) -> None:
        try:
            if isinstance(frame, str):
                await self._ws.send_text(frame)
            else:
                await self._ws.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError, OSError) as err:
            raise DeviceOfflineError("the agent's link is closed") from err

    async def receive(self) -> str | bytes | None:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes | None = message.get("bytes")
        return data if data is not None else ""

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(code, reason)


def _bearer(websocket: WebSocket) -> str | None:
    scheme, _, credential = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


async def _handshake(
    services: Services, websocket: WebSocket, transport: StarletteTransport
) -> tuple[LinkIdentity, Hello] | None:
    """Who the agent is and its hello, or None after closing the link with the reason."""
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            credential = _bearer(websocket)
            device = await services.authenticator.agent(credential) if credential else None
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


@router.websocket(LINK_PATH)
async def agent_link(websocket: WebSocket) -> None:
    """One agent's link, from handshake to close."""
    services = get_services(websocket)
    transport = StarletteTransport(websocket)
    await websocket.accept()
    try:
        opened = await _handshake(services, websocket, transport)
        if opened is not None:
            await services.hub.serve(*opened, transport)
    except Exception:
        # A database outage or a bug must end this link only, never the server.
        logger.exception("agent link failed")
        await transport.close(_CLOSE_INTERNAL, "server error")
