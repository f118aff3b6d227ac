"""The vocabulary over one persistent WebSocket (``GET /ws`` on the native face).

An HTTP request per action costs a request parse, a token check and a JSON response each time;
an agent driving a screen sends many small actions (a move, a click, a key), so the native face
also takes them over one WebSocket, checked once when it opens::

    -> {"id": 1, "action": "mouse.click", "params": {"x": 10, "y": 20}}
    <- {"id": 1, "result": {"status": "ok"}}
    <- {"id": 2, "error": "not_found", "details": "..."}          (a failed action)

``action`` is a wire name or an SDK name (``click``); results are the same JSON as the HTTP
routes answer (images as base64). Actions run one after the other, in the order sent. The
bearer token comes in the ``Authorization`` header of the upgrade (or ``?token=``); a missing
or bad one closes the socket with code 4401 before it is accepted. The token's expiry is
checked again (in memory) before each action.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from remotehands.agent.auth import TokenStore
from remotehands.agent.dispatch import Dispatcher
from remotehands.errors import NotFoundError, RemoteHandsError, ValidationError
from remotehands.protocol.actions import ACTIONS_BY_NAME, by_verb
from remotehands.protocol.encoding import jsonable

__all__ = ["UNAUTHORIZED_CLOSE", "actions_socket"]

log = logging.getLogger(__name__)

UNAUTHORIZED_CLOSE: Final = 4401
"""The close code of a socket opened without a valid token (4000 + the HTTP status)."""


def _token(websocket: WebSocket) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return websocket.query_params.get("token") or None


def _wire_name(action: object) -> str:
    if not isinstance(action, str):
        raise ValidationError('each message names its "action" (mouse.click, click, ...)')
    if action in ACTIONS_BY_NAME:
        return action
    spec = by_verb(action)
    if spec is None:
        raise NotFoundError(f"unknown action {action!r}: use a wire name such as mouse.click")
    return spec.name


def actions_socket(
    dispatcher: Dispatcher, tokens: TokenStore
) -> Callable[[WebSocket], Awaitable[None]]:
    """The endpoint of ``/ws`` for one device."""

    async def endpoint(websocket: WebSocket) -> None:
        token = _token(websocket)
        try:
            if token is None:
                raise NotFoundError("no token")
            tokens.remaining(token)
        except RemoteHandsError:
            await websocket.close(code=UNAUTHORIZED_CLOSE, reason="log in first: bearer token")
            return
        await websocket.accept()
        while True:
            try:
                raw = await websocket.receive()
            except WebSocketDisconnect:
                return
            if raw["type"] == "websocket.disconnect":
                return
            data = raw.get("bytes") or raw.get("text") or b""
            reply: dict[str, Any]
            ident: Any = None
            try:
                message = orjson.loads(data)
                if not isinstance(message, dict):
                    raise ValidationError("a message is a JSON object")
                ident = message.get("id")
                tokens.remaining(token)
                params = message.get("params") or {}
                if not isinstance(params, dict):
                    raise ValidationError('"params" is a JSON object')
                result = await dispatcher.run(_wire_name(message.get("action")), params)
                reply = {"id": ident, "result": jsonable(result)}
            except orjson.JSONDecodeError as err:
                reply = {"id": None, **ValidationError(f"not JSON: {err}").to_wire()}
            except RemoteHandsError as err:
                reply = {"id": ident, **err.to_wire()}
            except Exception:
                log.exception("unexpected failure of an action over the WebSocket")
                reply = {"id": ident, "error": "internal",
                         "details": "the agent failed unexpectedly; see its log"}  # fmt: skip
            try:
                await websocket.send_text(orjson.dumps(reply).decode())
            except (WebSocketDisconnect, RuntimeError):
                return

    return endpoint
