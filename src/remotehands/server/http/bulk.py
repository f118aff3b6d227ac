"""``POST /v1/bulk``: one action on a selection of devices, with bounded concurrency.

Request::

    {"action": "screenshot", "params": {"scale": 0.5},
     "selector": {"ids": [...], "tags": ["prod"], "status": "online"},
     "concurrency": 64}

The selector's parts all apply (``tags``: devices carrying every one of them); a token limited to
tags only ever selects devices it may see. Answer::

    {"results": [{"device_id", "name", "ok", "result" | "error": {"error", "details"},
                  "duration_ms"}, ...],
     "total_duration_ms": 123.4}

in the selection's order (by name); ids that name no visible device come back as ``not_found``
results. A selector without criteria, or one that matches no device, is refused (422).

With ``?stream=true`` the answer is NDJSON instead: one result line per device as soon as it
finishes, then a last line ``{"total_duration_ms": ..., "devices": N}``.

Authentication, roles, parameter validation, capability checks, auditing and metrics are those
of single device actions (:mod:`remotehands.server.http.device_actions`), per device; the audit
entries are written once the results are out, by the replica that took the request. With several
replicas, the devices linked to another replica go to it in one request
(:meth:`~remotehands.server.router.DeviceRouter.request_many`), and ``concurrency`` bounds the
devices in flight on each replica holding links.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.background import BackgroundTask

from remotehands.errors import (
    DeviceError,
    DeviceOfflineError,
    NotFoundError,
    RemoteHandsError,
    ValidationError,
)
from remotehands.protocol.actions import ACTIONS_BY_NAME, ActionSpec, Params, required_access
from remotehands.protocol.encoding import jsonable
from remotehands.server.auth import Principal, can_act, can_see_device, require_role
from remotehands.server.db.models import Device
from remotehands.server.http.device_actions import (
    DeviceTarget,
    Outcome,
    action_timeout_s,
    audit_params,
    check_capabilities,
    validate_params,
)
from remotehands.server.http.metrics import ServerMetrics, metrics_for
from remotehands.server.services import Services, get_services

__all__ = ["MAX_CONCURRENCY", "BulkRequest", "Selector", "router"]

logger = logging.getLogger(__name__)

MAX_CONCURRENCY = 1024
"""The most devices one bulk action may work on at the same time."""
_DB_TIMEOUT_S = 30.0

router = APIRouter()


class Selector(BaseModel):
    """Which devices: every given part must match."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(None, max_length=10_000)
    tags: list[str] | None = Field(None, max_length=64)
    status: Literal["online", "offline"] | None = None


class BulkRequest(BaseModel):
    """The body of ``POST /v1/bulk``."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    selector: Selector
    concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY)


def _entry(outcome: Outcome) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "device_id": outcome.device.id,
        "name": outcome.device.name,
        "ok": outcome.error is None,
    }
    if outcome.error is None:
        entry["result"] = jsonable(outcome.result)
    else:
        entry["error"] = outcome.error.to_wire()
    entry["duration_ms"] = outcome.duration_ms
    return entry


async def _select(
    services: Services, principal: Principal, selector: Selector
) -> list[DeviceTarget | Outcome]:
    """The selected devices in order; ids that name no visible device as failed outcomes."""
    statement = select(Device.id, Device.name, Device.tags, Device.capabilities)
    if selector.ids is not None:
        statement = statement.where(Device.id.in_(selector.ids))
    if selector.status is not None:
        statement = statement.where(Device.status == selector.status)
    statement = statement.order_by(Device.name, Device.id)
    async with asyncio.timeout(_DB_TIMEOUT_S), services.db.session() as session:
        rows = (await session.execute(statement)).all()
    wanted_tags = set(selector.tags or ())
    selected: list[DeviceTarget | Outcome] = []
    seen: set[str] = set()
    for row in rows:
        tags = [str(t) for t in row.tags or ()]
        if not can_see_device(principal, tags) or not wanted_tags <= set(tags):
            continue
        seen.add(row.id)
        selected.append(
            DeviceTarget(row.id, row.name, tags, [str(c) for c in row.capabilities or ()])
        )
    if selector.ids is not None and selector.status is None and selector.tags is None:
        for device_id in dict.fromkeys(selector.ids):
            if device_id not in seen:
                missing = DeviceTarget(device_id, "", [], [])
                selected.append(Outcome(missing, error=NotFoundError(f"no device {device_id}")))
    return selected


def _refused(
    services: Services, spec: ActionSpec, params: Params, target: DeviceTarget
) -> RemoteHandsError | None:
    """Why the action cannot go to ``target`` at all (the checks :func:`perform` makes before
    it asks the router), or None."""
    try:
        check_capabilities(spec, params, target)
    except RemoteHandsError as err:
        return err
    if not services.router.is_online(target.id):
        return DeviceOfflineError(
            f"device {target.id} ({target.name}) is offline: its agent is not connected"
        )
    return None


async def _run_all(
    services: Services,
    metrics: ServerMetrics,
    spec: ActionSpec,
    params: Params,
    wire_params: dict[str, Any],
    selected: list[DeviceTarget | Outcome],
    concurrency: int,
    deliver: Callable[[int, Outcome], None],
) -> None:
    """Run the action on every selected device, ``concurrency`` at a time; ``deliver`` gets
    each device's outcome (with its index in ``selected``) as soon as it is done.

    Every device goes through one :meth:`~remotehands.server.router.DeviceRouter.request_many`
    (the router sends the devices held by another replica to it in one request, not one each);
    outcomes, metrics and durations are those :func:`perform` gives a single action.
    """
    index_of: dict[str, int] = {}
    for index, target in enumerate(selected):
        if isinstance(target, Outcome):
            deliver(index, target)
            continue
        start = time.perf_counter()
        error = _refused(services, spec, params, target)
        if error is None:
            index_of[target.id] = index
            continue
        elapsed = time.perf_counter() - start
        metrics.observe(spec.name, error.code, elapsed)
        deliver(index, Outcome(target, error=error, duration_ms=round(elapsed * 1000, 3)))
    if not index_of:
        return
    timeout_s = action_timeout_s(wire_params, services.settings.request_timeout_s)
    replies = services.router.request_many(
        list(index_of), spec.name, wire_params, timeout_s, concurrency=concurrency
    )
    async with contextlib.aclosing(replies):
        async for reply in replies:
            index = index_of.pop(reply.device_id, -1)
            if index < 0:  # a router bug: never two results for one device
                logger.warning("bulk %s: a second reply for %s dropped", spec.name, reply.device_id)
                continue
            target = selected[index]
            assert isinstance(target, DeviceTarget)
            outcome = Outcome(target, reply.result, reply.error, reply.duration_ms)
            metrics.observe(spec.name, outcome.code, reply.duration_ms / 1000)
            deliver(index, outcome)
    for device_id, index in index_of.items():  # a router bug: never a device without result
        target = selected[index]
        assert isinstance(target, DeviceTarget)
        error = DeviceError(f"device {device_id}: the server lost this device's result")
        metrics.observe(spec.name, error.code, 0.0)
        deliver(index, Outcome(target, error=error))


async def _audit_all(
    services: Services,
    principal: Principal,
    spec: ActionSpec,
    wire_params: dict[str, Any],
    outcomes: list[Outcome],
) -> None:
    """Audit every device the action went to, one entry after the other (concurrent writers
    would only queue up on the database: SQLite has one writer), the parameters masked once."""

    def entries() -> Iterator[tuple[str | None, str, float, str | None]]:
        for outcome in outcomes:
            result, details = outcome.audited
            yield outcome.device.id, result, outcome.duration_ms, details

    await services.audit.record_many(
        actor=principal.actor,
        actor_kind=principal.kind,
        action=spec.name,
        params=audit_params(dict(wire_params), services.audit.key),
        outcomes=entries(),
    )


@router.post("/v1/bulk")
async def bulk_action(
    body: BulkRequest,
    request: Request,
    principal: Annotated[Principal, require_role("viewer")],
    stream: bool = False,
) -> Response:
    """Run one action on every selected device; see the module docstring."""
    spec = ACTIONS_BY_NAME.get(body.action)
    if spec is None:
        raise ValidationError(
            f"unknown action {body.action!r}; actions are named as in the agent link, such as "
            "screenshot or mouse.click"
        )
    can_act(principal, spec.access)
    if spec.streamed:
        raise ValidationError(
            f"{spec.name} streams its payload as the request body: send it to each device with "
            f"{spec.method} /v1/devices/{{id}}{spec.path}, not through /v1/bulk"
        )
    selector = body.selector
    if selector.ids is None and selector.tags is None and selector.status is None:
        raise ValidationError(
            'the selector is empty: select devices by "ids" (a list of device ids), "tags" '
            '(devices carrying every one of them) and/or "status" ("online" or "offline")'
        )
    params, wire_params = validate_params(spec, body.params)
    can_act(principal, required_access(spec, params))
    services = get_services(request)
    metrics = metrics_for(request.app)
    concurrency = body.concurrency or services.settings.bulk_concurrency
    started = time.perf_counter()
    selected = await _select(services, principal, selector)
    if not selected:
        raise ValidationError(
            f"no device matches the selector {selector.model_dump(exclude_none=True)}: check the "
            'ids, the tags (a device must carry every one) and the status ("online", "offline")'
        )

    def total_ms() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    # The audit is written after the results are out (it would double a bulk's time on SQLite),
    # and covers every device the action reached, even when the client goes away mid-stream.
    reached: list[Outcome] = []

    async def audit() -> None:
        await _audit_all(services, principal, spec, wire_params, reached)

    if not stream:
        results: list[dict[str, Any] | None] = [None] * len(selected)

        def keep(index: int, outcome: Outcome) -> None:
            results[index] = _entry(outcome)
            if not isinstance(selected[index], Outcome):
                reached.append(outcome)

        await _run_all(services, metrics, spec, params, wire_params, selected, concurrency, keep)
        return Response(
            orjson.dumps({"results": results, "total_duration_ms": total_ms()}),
            media_type="application/json",
            background=BackgroundTask(audit),
        )

    async def lines() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[Outcome | None] = asyncio.Queue()

        def put(index: int, outcome: Outcome) -> None:
            if not isinstance(selected[index], Outcome):
                reached.append(outcome)
            queue.put_nowait(outcome)

        async def produce() -> None:
            try:
                await _run_all(
                    services, metrics, spec, params, wire_params, selected, concurrency, put
                )
            finally:
                queue.put_nowait(None)

        # The producer is owned here: awaited at the end, cancelled if the client goes away.
        producer = asyncio.create_task(produce(), name="bulk-producer")
        try:
            while (outcome := await queue.get()) is not None:
                yield orjson.dumps(_entry(outcome)) + b"\n"
            await producer
            yield orjson.dumps({"total_duration_ms": total_ms(), "devices": len(selected)}) + b"\n"
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            # Shielded: a client that left must not leave its actions unaudited.
            await asyncio.shield(audit())

    return StreamingResponse(lines(), media_type="application/x-ndjson")
