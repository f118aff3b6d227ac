"""Device actions over one persistent WebSocket: ``/v1/devices/{device_id}/ws``.

The same messages as an agent's native ``/ws`` (``{"id", "action", "params"}`` in, ``{"id",
"result"}`` or ``{"id", "error", "details"}`` out) and the same checks as the HTTP device
routes (:mod:`remotehands.server.http.device_actions`), but the caller is authenticated and the
device looked up once, when the socket opens, not on every action, and each action's audit
entry recorded once its reply is on its way: the hop through the server costs the relay. The
credential is checked again every :data:`RECHECK_S` seconds, so a revoked token does not keep a
socket for long. Actions run in the order sent, one at a time.

On the server's own WebSocket protocol (:data:`remotehands.serving.DIRECT_FRAMES`) an action
whose device's link can take it at once is relayed from the socket's reader and answered from
the link's (:meth:`DeviceRouter.call`): no task is woken on the way. Anything else (an error to
explain, the credential's check, a device on another replica, a link or socket that would make
a write wait) is served by a task, in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from remotehands.errors import NotFoundError, RemoteHandsError, ValidationError
from remotehands.protocol.actions import ACTIONS_BY_NAME, ActionSpec, by_verb, required_access
from remotehands.protocol.encoding import jsonable
from remotehands.server.auth import Principal, can_act, require_role
from remotehands.server.auth.dependencies import request_credential
from remotehands.server.http.device_actions import (
    DeviceTarget,
    Outcome,
    action_timeout_s,
    check_capabilities,
    load_device,
    perform,
    record,
    record_soon,
    validate_params,
)
from remotehands.server.http.metrics import ServerMetrics, metrics_for
from remotehands.server.services import Services, get_services
from remotehands.serving import DIRECT_FRAMES

__all__ = ["RECHECK_S", "router"]

logger = logging.getLogger(__name__)

router = APIRouter()

RECHECK_S: Final = 30.0
"""How often the socket's credential is checked again (revocation, expiry, a changed role)."""
MAX_WAITING = 64
"""Messages read and waiting their turn beyond which the socket is no longer read until half
of them are served: a caller that sends without reading the replies is held back by its own
socket, not by the server's memory."""


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
    try:
        device = await load_device(services, principal, device_id)
    except RemoteHandsError as err:
        await websocket.close(code=4000 + err.http_status, reason=err.details[:120])
        return
    await websocket.accept()
    await _Relay(websocket, services, metrics_for(websocket.app), principal, device).run()


_Audit = tuple[str, dict[str, Any] | None, str, float, str | None]
"""What :func:`record` takes after the principal: action, params, result, duration, details."""


def _answer(
    ident: Any, spec: ActionSpec, wire_params: dict[str, Any], outcome: Outcome
) -> tuple[str, _Audit]:
    """The reply to send for ``outcome``, and its audit entry."""
    if outcome.error is not None:
        reply = {"id": ident, **outcome.error.to_wire()}
    else:
        reply = {"id": ident, "result": jsonable(outcome.result)}
    details = outcome.error.details if outcome.error else None
    return orjson.dumps(reply).decode(), (spec.name, wire_params, outcome.code,
                                          outcome.duration_ms, details)  # fmt: skip


class _Relay:
    """One socket's actions, in the order sent, one at a time (see the module's text)."""

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        metrics: ServerMetrics,
        principal: Principal,
        device: DeviceTarget,
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.metrics = metrics
        self.principal = principal
        self.device = device
        self.checked = time.monotonic()
        self.backlog: deque[str | bytes] = deque()
        self.busy = False
        """An action is under way (relayed, or served by :attr:`task`)."""
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.send_now: Callable[[str | bytes], bool] | None = None
        self.reading: Callable[[bool], None] | None = None
        self.paused = False
        """Whether the socket's reading is paused (too many messages waiting)."""

    async def run(self) -> None:
        """Serve the socket until the caller closes it."""
        direct = self.websocket.scope.get("extensions", {}).get(DIRECT_FRAMES)
        if direct is None:  # another server's WebSocket: every message through receive()
            while (frame := await self._receive()) is not None:
                if not await self._serve(frame):
                    return
            return
        self.send_now, self.reading = direct["send"], direct["reading"]
        direct["deliver"](self._on_frame)
        try:
            await self._receive()  # only the end comes this way now
        finally:
            direct["deliver"](None)
            self.closed = True
            self.backlog.clear()
            if self.task is not None:  # the action under way finishes, and is audited
                await self.task

    async def _receive(self) -> str | bytes | None:
        try:
            message = await self.websocket.receive()
        except WebSocketDisconnect:
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else (message.get("bytes") or b"")

    # -- in turn ---------------------------------------------------------------------------

    def _on_frame(self, frame: str | bytes) -> None:
        if self.closed:
            return
        self.backlog.append(frame)
        if not self.busy:
            self._next()
        elif len(self.backlog) >= MAX_WAITING and not self.paused and self.reading is not None:
            self.paused = True
            self.reading(False)

    def _next(self) -> None:
        """Start the next message, if any: relayed at once, or served by a task."""
        if not self.backlog or self.closed:
            self.busy = False
            return
        frame = self.backlog.popleft()
        self.busy = True
        if self.paused and len(self.backlog) <= MAX_WAITING // 2 and self.reading is not None:
            self.paused = False
            self.reading(True)
        if self._relay(frame):
            return  # answered from the link's reader (_relayed)
        self.task = asyncio.get_running_loop().create_task(self._in_task(self._serve(frame)))

    async def _in_task(self, work: Coroutine[Any, Any, bool]) -> None:
        try:
            if not await work:
                self.closed = True  # the caller has gone
        except Exception:  # a fault of ours: logged, the caller told (1011)
            logger.exception("device socket of %s: an action failed", self.device.id)
            await self._broken()
        finally:
            self.task = None
            self._next()

    async def _broken(self) -> None:
        """After a fault of ours (logged): the caller is told by closing the socket (1011)."""
        self.closed = True
        with contextlib.suppress(Exception):
            await self.websocket.close(code=1011, reason="internal error: see the server's log")

    # -- relayed from the socket's reader ---------------------------------------------------

    def _relay(self, frame: str | bytes) -> bool:
        """Start the action of ``frame`` on the device's link now; False when it needs the
        task (whatever is wrong with it is explained there)."""
        if self.send_now is None or time.monotonic() - self.checked > RECHECK_S:
            return False
        principal, device = self.principal, self.device
        try:
            data = orjson.loads(frame)
            if not isinstance(data, dict) or not isinstance(data.get("params", {}), dict):
                return False
            spec = _spec(data.get("action"))
            can_act(principal, spec.access)
            params, wire_params = validate_params(spec, data.get("params") or {})
            can_act(principal, required_access(spec, params))
            check_capabilities(spec, params, device)
        except (orjson.JSONDecodeError, RemoteHandsError):
            return False
        ident = data.get("id")
        started = time.perf_counter()

        def done(result: Any, error: RemoteHandsError | None) -> None:
            try:
                self._relayed(ident, spec, wire_params, started, result, error)
            except Exception:  # a fault of ours: logged, the caller told (1011)
                logger.exception("device socket of %s: answering failed", device.id)
                self.task = asyncio.get_running_loop().create_task(self._broken())

        timeout_s = action_timeout_s(wire_params, self.services.settings.request_timeout_s)
        return self.services.router.call(device.id, spec.name, wire_params, timeout_s, done)

    def _relayed(
        self,
        ident: Any,
        spec: ActionSpec,
        wire_params: dict[str, Any],
        started: float,
        result: Any,
        error: RemoteHandsError | None,
    ) -> None:
        """The device answered a relayed action: reply, audit, and on to the next message."""
        elapsed = time.perf_counter() - started
        outcome = Outcome(self.device, result, error, round(elapsed * 1000, 3))
        self.metrics.observe(spec.name, outcome.code, elapsed)
        text, audit = _answer(ident, spec, wire_params, outcome)
        assert self.send_now is not None
        try:
            sent = self.send_now(text)
        except ConnectionError:  # the caller has gone; its action is audited all the same
            sent, self.closed = True, True
        if sent and record_soon(
            self.services, self.principal, audit[0], self.device.id, *audit[1:]
        ):
            self._next()
            return
        # the reply or the audit entry would have to wait: a task finishes them, in turn
        self.task = asyncio.get_running_loop().create_task(
            self._in_task(self._finish(None if sent else text, audit))
        )

    async def _finish(self, text: str | None, audit: _Audit) -> bool:
        try:
            if text is not None:
                await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            return False
        finally:
            await record(self.services, self.principal, audit[0], self.device.id, *audit[1:])
        return True

    # -- served by a task ---------------------------------------------------------------------

    async def _serve(self, frame: str | bytes) -> bool:
        """Run one message's action and answer it; False when the caller has gone."""
        services, principal = self.services, self.principal
        ident: Any = None
        spec: ActionSpec | None = None
        raw: dict[str, Any] | None = None
        audit: _Audit | None = None
        started = time.perf_counter()
        try:
            data = orjson.loads(frame)
            if not isinstance(data, dict):
                raise ValidationError("a message is a JSON object")
            ident = data.get("id")
            if time.monotonic() - self.checked > RECHECK_S:
                credential = request_credential(self.websocket)
                self.principal = principal = await services.authenticator.principal(credential)
                self.checked = time.monotonic()
            spec = _spec(data.get("action"))
            raw = data.get("params") or {}
            if not isinstance(raw, dict):
                raise ValidationError('"params" is a JSON object')
            can_act(principal, spec.access)
            params, wire_params = validate_params(spec, raw)
            can_act(principal, required_access(spec, params))
        except orjson.JSONDecodeError as err:
            text = orjson.dumps({"id": None, **ValidationError(f"not JSON: {err}").to_wire()})
            reply = text.decode()
        except RemoteHandsError as err:
            if spec is not None:
                audit = (spec.name, raw, err.code, (time.perf_counter() - started) * 1000,
                         err.details)  # fmt: skip
            reply = orjson.dumps({"id": ident, **err.to_wire()}).decode()
        else:
            outcome = await perform(services, self.metrics, spec, params, wire_params, self.device)
            reply, audit = _answer(ident, spec, wire_params, outcome)
        try:
            await self.websocket.send_text(reply)
        except (WebSocketDisconnect, RuntimeError):
            return False
        finally:
            # After the reply, not before: the caller does not wait for its audit entry. The
            # entry is still recorded (queued for the writer) before the next message is read.
            if audit is not None:
                await record(services, principal, audit[0], self.device.id, *audit[1:])
        return True
