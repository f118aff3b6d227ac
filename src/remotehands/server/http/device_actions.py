"""Device actions through the server: ``/v1/devices/{device_id}/<native path>``.

One generic route serves the whole action vocabulary: the rest of the path and the method name
an action of :data:`~remotehands.protocol.actions.ACTIONS` (``POST .../mouse/click`` is
``mouse.click``), its parameters come from the query string (``GET``) or the JSON body (the
others; query parameters such as ``lock_timeout_ms`` are merged under the body), path parameters
(``{name}``, ``{id}``) are merged in, and the answer is exactly the agent's native answer: same
status, same shape, images as base64.

Before anything reaches the agent, in this order: authentication (any role), the route (404),
the role and token scope for the action's access (403), the parameters (422 naming the fields),
the device and the token's tag limits (404), the device's capabilities (501 ``unsupported``),
the link (503 ``device_offline``, at once). Every call that named an action is audited and
counted in the metrics. :func:`perform` is shared with bulk actions.

A streamed action (``PUT .../media/images/{name}``) takes its payload as the request body: its
parameters come from the path and the query string, its size from ``Content-Length``, and the
body goes to the agent as a chunked transfer as it arrives (:meth:`~remotehands.server.router.
DeviceRouter.upload`), never held whole here nor written to a file. A client that goes away
cancels the transfer, and the device drops what it wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import orjson
import pydantic
from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from starlette.requests import ClientDisconnect

from remotehands.errors import (
    DeviceOfflineError,
    NotFoundError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol.actions import (
    ACTIONS_BY_NAME,
    ActionSpec,
    Params,
    match_route,
    required_access,
    wait_seconds,
)
from remotehands.protocol.encoding import jsonable
from remotehands.protocol.masking import mask_params
from remotehands.protocol.query import params_from_query
from remotehands.protocol.results import failed_step
from remotehands.protocol.streams import DEFAULT_CHUNK
from remotehands.protocol.validation import check_int_range, describe_validation
from remotehands.server.auth import Principal, can_act, can_see_device, require_role
from remotehands.server.cluster.router import NatsRouter
from remotehands.server.db.models import Device
from remotehands.server.http.metrics import ServerMetrics, metrics_for
from remotehands.server.services import Services, get_services

__all__ = [
    "AUDIT_MAX_STRING",
    "DeviceTarget",
    "Outcome",
    "action_timeout_s",
    "audit_params",
    "check_capabilities",
    "load_device",
    "params_from_query",
    "perform",
    "record",
    "record_soon",
    "router",
    "validate_params",
]

AUDIT_MAX_STRING = 128
"""Longer strings (typed text, clipboard contents) are audited as their length only."""

_DB_TIMEOUT_S = 10.0
_MAX_TIMEOUT_S = 3600.0

router = APIRouter()


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceTarget:
    """What an action needs to know about its device."""

    id: str
    name: str
    tags: list[str]
    capabilities: list[str]


@dataclasses.dataclass(slots=True)
class Outcome:
    """The result of one action on one device: ``result``, or ``error`` when it failed."""

    device: DeviceTarget
    result: Any = None
    error: RemoteHandsError | None = None
    duration_ms: float = 0.0

    @property
    def code(self) -> str:
        """``ok`` or the error's wire code."""
        return "ok" if self.error is None else self.error.code

    @property
    def audited(self) -> tuple[str, str | None]:
        """The result and details the audit records: the error's, or those of a sequence's
        first failed step, else ``("ok", None)``."""
        if self.error is not None:
            return self.error.code, self.error.details
        return failed_step(self.result) or ("ok", None)


# -- parameters -------------------------------------------------------------------------------


async def _read_params(
    request: Request, spec: ActionSpec, path_params: Mapping[str, str]
) -> dict[str, Any]:
    raw = params_from_query(spec, request.query_params.multi_items())
    if request.method != "GET":
        body = await request.body()
        if body.strip():
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise ValidationError(f"the request body is not valid JSON: {err}") from err
            if not isinstance(data, dict):
                raise ValidationError(
                    f"the request body must be a JSON object with the parameters of "
                    f"{spec.name}, not {type(data).__name__}"
                )
            raw.update(data)
    raw.update(path_params)
    return raw


def validate_params(spec: ActionSpec, raw: Mapping[str, Any]) -> tuple[Params, dict[str, Any]]:
    """The parameters checked against the action's model, and their wire form (what the
    caller set, validated, JSON-ready). Raises :class:`ValidationError` naming the fields."""
    try:
        params = spec.params.model_validate(raw)
    except pydantic.ValidationError as err:
        raise ValidationError(describe_validation(err, spec.name)) from err
    wire = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
    check_int_range(wire, spec.name)  # the link could not carry it: a 422, not a 500
    return params, wire


def action_timeout_s(wire_params: Mapping[str, Any], base_s: float) -> float:
    """How long the server waits for the device: ``base_s`` plus every wait the parameters
    ask for (a ``timeout_ms`` of a wait for a stable screen, a sequence's sleeps...)."""
    return min(_MAX_TIMEOUT_S, base_s + wait_seconds(dict(wire_params)))


def audit_params(value: Any, key: bytes | None = None) -> Any:
    """Parameters as the audit log keeps them: typed text and clipboard contents as their
    length and a hash keyed by ``key`` at any depth (:func:`mask_params`), other strings over
    :data:`AUDIT_MAX_STRING` characters as ``<N chars>`` (secret keys are dropped by the audit
    log itself)."""
    return _shorten(mask_params(value, key))


def _shorten(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= AUDIT_MAX_STRING else f"<{len(value)} chars>"
    if isinstance(value, Mapping):
        return {str(k): _shorten(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shorten(v) for v in value]
    return value


def _needed_capabilities(spec: ActionSpec, params: Params) -> list[tuple[str, str]]:
    """``(capability, what needs it)`` for the action, and for each step of a sequence."""
    needed = [(spec.capability, spec.name)] if spec.capability is not None else []
    for index, step in enumerate(getattr(params, "steps", None) or ()):
        step_spec = ACTIONS_BY_NAME.get(getattr(step, "type", ""))
        if step_spec is not None and step_spec.capability is not None:
            label = f"step {getattr(step, 'name', None) or index} ({step_spec.name})"
            needed.append((step_spec.capability, label))
    return needed


def check_capabilities(spec: ActionSpec, params: Params, device: DeviceTarget) -> None:
    """Raise :class:`UnsupportedError` when the device lacks a capability the action needs.

    A device that never said hello has no known capabilities: it is let through (to be
    refused as offline, or by its agent)."""
    if not device.capabilities:
        return
    for capability, what in _needed_capabilities(spec, params):
        if capability not in device.capabilities:
            raise UnsupportedError(
                f"{what} needs the {capability} capability, which device {device.id} does not "
                f"have (it has: {', '.join(device.capabilities)})"
            )


# -- devices ----------------------------------------------------------------------------------


async def load_device(services: Services, principal: Principal, device_id: str) -> DeviceTarget:
    """The device, if it exists and the principal may see it; :class:`NotFoundError` if not
    (a device outside a token's tags is not revealed).

    A device whose link this process holds is known from the link (its hello and the tag
    changes the hub follows), which spares a database read on the hot path; so is one linked to
    another replica, from what that replica announced
    (:meth:`~remotehands.server.cluster.router.NatsRouter.known`).
    """
    link = services.hub.get(device_id)
    if link is not None:
        if not can_see_device(principal, link.tags):
            raise NotFoundError(f"no device {device_id}")
        return DeviceTarget(link.device_id, link.name, list(link.tags),
                            [str(c) for c in link.hello.capabilities])  # fmt: skip
    # linked to another replica: what its holder announced, as current as the events
    known = services.router.known(device_id) if isinstance(services.router, NatsRouter) else None
    if known is not None:
        if not can_see_device(principal, known.tags):
            raise NotFoundError(f"no device {device_id}")
        return DeviceTarget(device_id, known.name, list(known.tags), list(known.capabilities))
    async with asyncio.timeout(_DB_TIMEOUT_S), services.db.session() as session:
        row = (
            await session.execute(
                select(Device.id, Device.name, Device.tags, Device.capabilities).where(
                    Device.id == device_id
                )
            )
        ).first()
    if row is None or not can_see_device(principal, row.tags):
        raise NotFoundError(f"no device {device_id}")
    return DeviceTarget(
        row.id, row.name, [str(t) for t in row.tags or ()], [str(c) for c in row.capabilities or ()]
    )


async def perform(
    services: Services,
    metrics: ServerMetrics,
    spec: ActionSpec,
    params: Params,
    wire_params: dict[str, Any],
    device: DeviceTarget,
) -> Outcome:
    """Run one validated action on one visible device; never raises a RemoteHandsError (the
    outcome carries it). Counted in ``metrics``; the caller audits with :func:`record`."""
    start = time.perf_counter()
    outcome = Outcome(device)
    try:
        check_capabilities(spec, params, device)
        router = services.router
        if not router.is_online(device.id):
            raise DeviceOfflineError(
                f"device {device.id} ({device.name}) is offline: its agent is not connected"
            )
        timeout_s = action_timeout_s(wire_params, services.settings.request_timeout_s)
        outcome.result = await router.request(device.id, spec.name, wire_params, timeout_s)
    except RemoteHandsError as err:
        outcome.error = err
    elapsed = time.perf_counter() - start
    outcome.duration_ms = round(elapsed * 1000, 3)
    metrics.observe(spec.name, outcome.code, elapsed)
    return outcome


def _entry(
    services: Services,
    principal: Principal,
    action: str,
    device_id: str | None,
    params: Mapping[str, Any] | None,
    result: str,
    duration_ms: float,
    details: str | None,
) -> dict[str, Any]:
    """The audit log's fields for one device action, its parameters masked."""
    return {
        "actor": principal.actor,
        "actor_kind": principal.kind,
        "action": action,
        "device_id": device_id,
        "params": audit_params(dict(params), services.audit.key) if params is not None else None,
        "result": result,
        "duration_ms": duration_ms,
        "details": details,
    }


def record_soon(
    services: Services,
    principal: Principal,
    action: str,
    device_id: str | None,
    params: Mapping[str, Any] | None,
    result: str,
    duration_ms: float,
    details: str | None = None,
) -> bool:
    """:func:`record` without a coroutine, for callbacks; False (nothing recorded) when that
    would wait: then await :func:`record` (see :meth:`AuditLog.record_soon`)."""
    entry = _entry(services, principal, action, device_id, params, result, duration_ms, details)
    return services.audit.record_soon(**entry)


async def record(
    services: Services,
    principal: Principal,
    action: str,
    device_id: str | None,
    params: Mapping[str, Any] | None,
    result: str,
    duration_ms: float,
    details: str | None = None,
) -> None:
    """Audit one device action (never raises; queued for the audit writer, so the caller's
    next request does not wait on the database)."""
    entry = _entry(services, principal, action, device_id, params, result, duration_ms, details)
    await services.audit.record(**entry, wait=False)


# -- the route ----------------------------------------------------------------------------------


@router.api_route(
    "/v1/devices/{device_id}/{path:path}",
    methods=["GET", "POST", "PUT", "DELETE"],
    include_in_schema=False,
)
async def device_action(
    device_id: str,
    path: str,
    request: Request,
    principal: Annotated[Principal, require_role("viewer")],
) -> Response:
    """Run the action served at this native path on the device; answer as the agent would."""
    found = match_route(request.method, "/" + path)
    if found is None:
        raise NotFoundError(
            f"no device action at {request.method} /{path}: device actions use the agent's "
            f"native paths, such as GET /v1/devices/{device_id}/screenshot"
        )
    spec, path_params = found
    if spec.streamed:
        return await _streamed_action(request, principal, device_id, spec, path_params)
    services = get_services(request)
    metrics = metrics_for(request.app)
    start = time.perf_counter()
    raw: dict[str, Any] | None = None
    try:
        can_act(principal, spec.access)
        raw = await _read_params(request, spec, path_params)
        params, wire_params = validate_params(spec, raw)
        can_act(principal, required_access(spec, params))
        device = await load_device(services, principal, device_id)
    except RemoteHandsError as err:
        elapsed = time.perf_counter() - start
        metrics.observe(spec.name, err.code, elapsed)
        await record(
            services, principal, spec.name, device_id, raw, err.code, elapsed * 1000, err.details
        )
        raise
    outcome = await perform(services, metrics, spec, params, wire_params, device)
    if outcome.error is not None:
        await record(
            services,
            principal,
            spec.name,
            device.id,
            wire_params,
            outcome.code,
            outcome.duration_ms,
            outcome.error.details,
        )
        raise outcome.error
    # A result that says it was only a dry run (a desktop's power action without a configured
    # command) is audited as one: nothing happened on the device.
    result, details = outcome.audited
    if isinstance(outcome.result, dict) and outcome.result.get("dry_run") is True:
        result, details = "dry_run", "a dry run: the device only logged what it would do"
    await record(services, principal, spec.name, device.id, wire_params, result,
                 outcome.duration_ms, details)  # fmt: skip
    if spec.status == 204:
        return Response(status_code=204)
    return Response(
        orjson.dumps(jsonable(outcome.result)),
        status_code=spec.status,
        media_type="application/json",
    )


# -- streamed actions -----------------------------------------------------------------------------


BODY_STALL_S = 60.0
"""The longest a streamed body may pause between two pieces before the upload is given up."""


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, in pieces of a link chunk (the HTTP server hands it out
    in pieces of a few KiB: one link message each would cost more than the bytes); a client gone
    or stalled mid-body is a :class:`ValidationError` (the transfer is cancelled with it)."""
    received = 0
    stream = request.stream()
    piece = bytearray()
    try:
        while True:
            async with asyncio.timeout(BODY_STALL_S):
                chunk = await anext(stream, None)
            if chunk is None:
                if piece:
                    yield bytes(piece)
                return
            received += len(chunk)
            piece += chunk
            if len(piece) >= DEFAULT_CHUNK:
                yield bytes(piece)
                piece.clear()
    except ClientDisconnect:
        raise ValidationError(
            f"the client went away after {received} bytes of the upload; nothing was kept"
        ) from None
    except TimeoutError:
        raise ValidationError(
            f"the client sent nothing for {BODY_STALL_S:g} s after {received} bytes of the "
            "upload; nothing was kept"
        ) from None


async def _streamed_action(
    request: Request,
    principal: Principal,
    device_id: str,
    spec: ActionSpec,
    path_params: Mapping[str, str],
) -> Response:
    """Relay a streamed action: the body to the agent as a transfer to the target named after
    the action, its other parameters (JSON) as the transfer's name."""
    services = get_services(request)
    metrics = metrics_for(request.app)
    start = time.perf_counter()
    raw: dict[str, Any] | None = None
    audited_device = device_id
    wire_params: dict[str, Any] | None = None
    try:
        can_act(principal, spec.access)
        raw = {**params_from_query(spec, request.query_params.multi_items()), **path_params}
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise ValidationError(
                "send the payload's size as Content-Length (a streamed upload cannot be chunked)"
            )
        raw["size"] = size = int(declared)
        params, wire_params = validate_params(spec, raw)
        can_act(principal, required_access(spec, params))
        device = await load_device(services, principal, device_id)
        audited_device = device.id
        check_capabilities(spec, params, device)
        if not services.router.is_online(device.id):
            raise DeviceOfflineError(
                f"device {device.id} ({device.name}) is offline: its agent is not connected"
            )
        name = orjson.dumps({k: v for k, v in wire_params.items() if k != "size"}).decode()
        result = await services.router.upload(device.id, spec.name, _body(request), size, name=name)
    except RemoteHandsError as err:
        elapsed = time.perf_counter() - start
        metrics.observe(spec.name, err.code, elapsed)
        await record(services, principal, spec.name, audited_device, wire_params or raw,
                     err.code, elapsed * 1000, err.details)  # fmt: skip
        raise
    elapsed = time.perf_counter() - start
    metrics.observe(spec.name, "ok", elapsed)
    await record(services, principal, spec.name, audited_device, wire_params, "ok", elapsed * 1000)
    return Response(
        orjson.dumps(jsonable(result)), status_code=spec.status, media_type="application/json"
    )
