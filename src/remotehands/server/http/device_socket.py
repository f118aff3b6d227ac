"""Device actions over one persistent WebSocket: ``/v1/devices/{device_id}/ws``.

The same messages as an agent's native ``/ws`` (``{"id", "action", "params"}`` in, ``{"id",
"result"}`` or ``{"id", "error", "details"}`` out) and the same checks as the HTTP device
routes (:mod:`remotehands.server.http.device_actions`), but the caller is authenticated and the
device looked up once, when the socket opens, not on every action, and each action's audit
entry recorded once its reply is on its way: the hop through the server costs the relay. The
credential is checked again every :data:`RECHECK_S` seconds, so a revoked token does not keep a
socket for long. Actions run in the order sent, one at a time.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from remotehands.errors import NotFoundError, RemoteHandsError, ValidationError
from remotehands.protocol.actions import ACTIONS_BY_NAME, ActionSpec, by_verb, required_access
from remotehands.protocol.encoding import jsonable
from remotehands.server.auth import Principal, can_act, require_role
from remotehands.server.auth.dependencies import request_credential
from remotehands.server.http.device_actions import load_device, perform, record, validate_params
from remotehands.server.http.metrics import metrics_for
from remotehands.server.services import get_services

__all__ = ["RECHECK_S", "router"]

router = APIRouter()

RECHECK_S: Final = 30.0
"""How often the socket's credential is checked again (revocation, expiry, a changed role)."""


def _spec(action: object) -> ActionSpec:
    if not isinstance(action, str):
        raise ValidationError('each message names its "action" (mouse.click, click, ...)')
    spec = ACTIONS_BY_NAME.get(action) or by_verb(action)
    if spec is None:
        raise NotFoundError(f"unknown action {action!r}: use a wire name such as mouse.click")
    return spec


@router.websocket("/v1/devices/{device_id}/ws")
async def device_socket(
    websocket: WebSocket,
    device_id: str,
    principal: Annotated[Principal, require_role("viewer")],
) -> None:
    """Relay actions to the device until the caller closes the socket."""
    services = get_services(websocket)
    metrics = metrics_for(websocket.app)
    try:
        device = await load_device(services, principal, device_id)
    except RemoteHandsError as err:
        await websocket.close(code=4000 + err.http_status, reason=err.details[:120])
        return
    await websocket.accept()
    checked = time.monotonic()
    while True:
        try:
            message = await websocket.receive()
        except WebSocketDisconnect:
            return
        if message["type"] == "websocket.disconnect":
            return
        ident: Any = None
        reply: dict[str, Any]
        spec: ActionSpec | None = None
        raw: dict[str, Any] | None = None
        audit: tuple[Any, ...] | None = None
        started = time.perf_counter()
        try:
            if time.monotonic() - checked > RECHECK_S:
                credential = request_credential(websocket)
                principal = await services.authenticator.principal(credential)
                checked = time.monotonic()
            data = orjson.loads(message.get("bytes") or message.get("text") or b"")
            if not isinstance(data, dict):
                raise ValidationError("a message is a JSON object")
            ident = data.get("id")
            spec = _spec(data.get("action"))
            raw = data.get("params") or {}
            if not isinstance(raw, dict):
                raise ValidationError('"params" is a JSON object')
            can_act(principal, spec.access)
            params, wire_params = validate_params(spec, raw)
            can_act(principal, required_access(spec, params))
        except orjson.JSONDecodeError as err:
            reply = {"id": None, **ValidationError(f"not JSON: {err}").to_wire()}
        except RemoteHandsError as err:
            if spec is not None:
                audit = (spec.name, raw, err.code, (time.perf_counter() - started) * 1000,
                         err.details)  # fmt: skip
            reply = {"id": ident, **err.to_wire()}
        else:
            outcome = await perform(services, metrics, spec, params, wire_params, device)
            if outcome.error is not None:
                reply = {"id": ident, **outcome.error.to_wire()}
            else:
                reply = {"id": ident, "result": jsonable(outcome.result)}
            audit = (spec.name, wire_params, outcome.code, outcome.duration_ms,
                     outcome.error.details if outcome.error else None)  # fmt: skip
        try:
            await websocket.send_text(orjson.dumps(reply).decode())
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            # After the reply, not before: the caller does not wait for its audit entry. The
            # entry is still recorded (queued for the writer) before the next message is read.
            if audit is not None:
                await record(services, principal, audit[0], device.id, *audit[1:])
