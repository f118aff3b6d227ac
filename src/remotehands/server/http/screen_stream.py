"""``/v1/devices/{device_id}/screen/ws``: a device's screen, live, through the server.

A WebSocket; authenticate with ``Authorization: Bearer ...`` or ``?token=...`` (browsers cannot
set headers on a WebSocket). Any role may watch (it reads the screen); a token limited to tags
sees only the devices it may see. ``?screen=0&rate=30&quality=75`` choose the screen, the most
frames a second and the JPEG quality. Each frame is one binary message holding one JPEG; a frame
comes only when the screen changed. Closing ends the watch.

``?codec=jpeg|jpeg-rect|h264`` chooses the encoding (``jpeg-rect``: after a whole first frame,
only the changed rectangle; ``h264``: Annex B constrained baseline, an IDR frame with its SPS and
PPS first). With ``codec`` given, every binary message starts with a 14-byte header (big-endian)
before the encoded bytes::

    offset  size  field
    0       1     kind: 0 jpeg (whole frame), 1 jpeg rectangle, 2 h264 access unit
    1       1     flags: bit 0 set for a key frame (decodes alone)
    2       2     x of the image on the screen (a jpeg rectangle; else 0)
    4       2     y
    6       2     screen width
    8       2     screen height
    10      4     seq: the agent's frame counter (a gap: frames were dropped upstream)

Without ``codec`` the messages are bare JPEG, as they always were. The client may send the
text message ``keyframe`` (its decoder failed): frames are skipped until the next key frame,
which the agent sends soon even if the screen is still. The first frame of a watch is a key
frame, and so is the first after a frame was dropped anywhere on the way.

Refusals come before the handshake as the usual JSON error answer (401, 403, 404 for a device
the caller may not see, 422, 501 for a device without a screen, 503 when it is offline), or as a
close with ``4000 + status`` where the server cannot answer a handshake with a body. A device
that goes offline during the watch closes it with 4503. Viewers that read too slowly lose
frames, never the stream; one that stops reading for 10 s is closed with 1008. Every watch is
audited as ``screen.watch`` when it ends, with its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from typing import Annotated

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from remotehands.errors import (
    DeviceOfflineError,
    RemoteHandsError,
    UnsupportedError,
)
from remotehands.protocol.link import Watch
from remotehands.protocol.streams import Frame, KeyframeRequests
from remotehands.protocol.validation import validated
from remotehands.server.auth import Principal, can_act, require_role
from remotehands.server.http.device_actions import load_device, record
from remotehands.server.http.errors import error_response
from remotehands.server.services import get_services

__all__ = ["FRAME_HEADER", "FRAME_KINDS", "SCREEN_WS_PATH", "frame_message", "router"]

logger = logging.getLogger(__name__)

SCREEN_WS_PATH = "/v1/devices/{device_id}/screen/ws"
SEND_TIMEOUT_S = 10.0
"""A viewer that cannot take one frame in this long is disconnected."""
_CLOSE_TOO_SLOW = 1008
_AUDIT_ACTION = "screen.watch"
FRAME_HEADER = struct.Struct("!BBHHHHI")
"""The header before each frame when the viewer chose a ``codec`` (see the module docstring)."""
FRAME_KINDS = {"jpeg": 0, "jpeg-rect": 1, "h264": 2}
"""The header's kind byte per frame format; a ``jpeg-rect`` key frame (whole) is kind 0."""


def frame_message(frame: Frame) -> bytes:
    """``frame`` as one message of a socket whose viewer chose a codec: header, then data."""
    kind = FRAME_KINDS.get(frame.format, 0)
    if kind == 1 and frame.key:
        kind = 0
    header = FRAME_HEADER.pack(kind, 1 if frame.key else 0, frame.x, frame.y, frame.width,
                               frame.height, frame.seq & 0xFFFFFFFF)  # fmt: skip
    return header + frame.data


router = APIRouter()


async def _refuse(websocket: WebSocket, error: RemoteHandsError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = error_response(error.http_status, error.code, error.details)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=4000 + error.http_status, reason=error.details[:120])


def _settings(websocket: WebSocket) -> Watch:
    query = websocket.query_params
    values = {"stream": 0, **{k: query[k] for k in ("screen", "rate", "quality") if k in query}}
    if "codec" in query:
        values["format"] = query["codec"]
    return validated(Watch, values, "the screen watch")


@router.websocket(SCREEN_WS_PATH)
async def watch_screen(
    websocket: WebSocket,
    device_id: str,
    principal: Annotated[Principal, require_role("viewer")],
) -> None:
    """Send the device's screen, frame by frame, until the viewer or the device goes."""
    services = get_services(websocket)
    started = time.perf_counter()
    frames_sent = 0
    try:
        can_act(principal, "read")
        settings = _settings(websocket)
        device = await load_device(services, principal, device_id)
        if device.capabilities and "screen" not in device.capabilities:
            raise UnsupportedError(f"device {device.id} has no screen to watch")
        router_ = services.router
        framed = "codec" in websocket.query_params
        watching = router_.watch(device.id, settings.screen, rate=settings.rate,
                                 quality=settings.quality, codec=settings.format)  # fmt: skip
        frames = await watching.__aenter__()
    except RemoteHandsError as err:
        await record(services, principal, _AUDIT_ACTION, device_id, None, err.code,
                     (time.perf_counter() - started) * 1000, err.details)  # fmt: skip
        await _refuse(websocket, err)
        return
    params = {"screen": settings.screen, "rate": settings.rate, "quality": settings.quality,
              "codec": settings.format}  # fmt: skip
    result, details = "ok", None
    try:
        await websocket.accept()

        async def client_gone() -> None:
            # The viewer's disconnect ends the watch; it may ask for a key frame meanwhile.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    if message.get("text") == "keyframe" and isinstance(frames, KeyframeRequests):
                        await frames.request_key()

        async def pump() -> None:
            nonlocal frames_sent
            async for frame in frames:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await websocket.send_bytes(frame_message(frame) if framed else frame.data)
                frames_sent += 1

        gone = asyncio.create_task(client_gone(), name="screen-ws-client")
        sending = asyncio.create_task(pump(), name="screen-ws-frames")
        try:
            await asyncio.wait({gone, sending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (gone, sending):
                task.cancel()
            await asyncio.gather(gone, sending, return_exceptions=True)
        if sending.done() and not sending.cancelled():
            error = sending.exception()
            if isinstance(error, RemoteHandsError):
                result, details = error.code, error.details
                code = 4503 if isinstance(error, DeviceOfflineError) else 4000 + error.http_status
                with contextlib.suppress(Exception):
                    await websocket.close(code, error.details[:120])
            elif isinstance(error, TimeoutError):
                result, details = "timeout", "the viewer stopped reading"
                with contextlib.suppress(Exception):
                    await websocket.close(_CLOSE_TOO_SLOW, "too slow")
            elif error is None:
                with contextlib.suppress(Exception):
                    await websocket.close(1000, "the stream ended")
    finally:
        await watching.__aexit__(None, None, None)
        details = details or f"{frames_sent} frames"
        await record(services, principal, _AUDIT_ACTION, device.id, params, result,
                     (time.perf_counter() - started) * 1000, details)  # fmt: skip
