"""``/v1/events``: a WebSocket streaming device events as JSON text frames (viewer and up).

Authenticate with ``Authorization: Bearer ...`` or ``?token=...`` (browsers cannot set headers
on a WebSocket); ``?types=device.online,device.offline`` keeps only those types. Each frame is
one event::

    {"type": "device.online", "device_id": "dev_...", "at": "2026-...Z", "tags": [...], ...}

Types: ``device.online``, ``device.offline``, ``device.health``, ``device.updated``,
``device.deleted``, ``device.enrolled``. A token limited to tags sees only the events of devices
it may see. A client that reads too slowly loses events (see :mod:`remotehands.server.events`);
one that stops reading altogether is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, WebSocket
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from remotehands.server.auth import Principal, can_see_device, require_role
from remotehands.server.db.models import Device
from remotehands.server.services import Services, get_services

__all__ = ["EVENTS_PATH", "router"]

logger = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
SEND_TIMEOUT_S = 10.0
"""A client that cannot take one frame in this long is disconnected."""
_DB_TIMEOUT_S = 5.0
_CLOSE_TOO_SLOW = 1008

router = APIRouter()


async def _visible(services: Services, principal: Principal, event: dict[str, Any]) -> bool:
    if principal.tags is None:
        return True
    tags = event.get("tags")
    if tags is None:
        # An event published without the device's tags: look them up.
        device_id = event.get("device_id")
        if not isinstance(device_id, str):
            return False
        async with asyncio.timeout(_DB_TIMEOUT_S), services.db.session() as session:
            tags = await session.scalar(select(Device.tags).where(Device.id == device_id))
        if tags is None:
            return False
    return can_see_device(principal, [str(t) for t in tags])


@router.websocket(EVENTS_PATH)
async def events_stream(
    websocket: WebSocket, principal: Annotated[Principal, require_role("viewer")]
) -> None:
    """Stream events until the client goes (or the server stops)."""
    services = get_services(websocket)
    types_param = websocket.query_params.get("types")
    types = {t.strip() for t in types_param.split(",") if t.strip()} if types_param else None
    await websocket.accept()
    with services.events.subscribe(types=types) as subscription:

        async def watch_client() -> None:
            # The client sends nothing we need; its disconnect ends the stream.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            subscription.close()

        watcher = asyncio.create_task(watch_client(), name="events-client-watch")
        try:
            async for event in subscription:
                if not await _visible(services, principal, event):
                    continue
                try:
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await websocket.send_text(orjson.dumps(event).decode())
                except TimeoutError:
                    logger.info("events: a client stopped reading, disconnecting it")
                    with contextlib.suppress(Exception):
                        await websocket.close(_CLOSE_TOO_SLOW, "too slow")
                    return
                except (WebSocketDisconnect, RuntimeError, OSError):
                    return
            # The bus closed: the server is stopping.
            with contextlib.suppress(Exception):
                await websocket.close(1001, "server shutting down")
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
