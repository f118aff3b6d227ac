"""``GET /metrics``: Prometheus text for the fleet (viewer and up).

Every app has its own :class:`ServerMetrics` with its own ``CollectorRegistry`` (never the
process-wide one), so several apps in one process, as in tests, count separately.

- ``remotehands_devices_online``: devices the database counts online (all replicas);
- ``remotehands_agent_links``: agent links this process holds;
- ``remotehands_actions_total{action,result}``: device actions by name and result code
  (``ok`` or an error code such as ``device_offline``);
- ``remotehands_action_seconds{action}``: how long device actions took, as a histogram.

A replica of several (NATS configured) adds a ``replica`` label with its id to every metric.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select
from starlette.applications import Starlette

from remotehands.errors import ForbiddenError
from remotehands.server.auth import Principal, require_role
from remotehands.server.db.models import Device
from remotehands.server.services import get_services

__all__ = ["ServerMetrics", "metrics_for", "router"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COUNT_TIMEOUT_S = 5.0

router = APIRouter()


class ServerMetrics:
    """The metrics of one app, in a registry of its own."""

    def __init__(self, replica: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._replica: tuple[str, ...] = (replica,) if replica else ()
        extra: tuple[str, ...] = ("replica",) if replica else ()
        devices_online = Gauge(
            "remotehands_devices_online",
            "Devices marked online in the database.",
            extra,
            registry=self.registry,
        )
        agent_links = Gauge(
            "remotehands_agent_links",
            "Agent links held by this server process.",
            extra,
            registry=self.registry,
        )
        self.devices_online = devices_online.labels(*self._replica) if replica else devices_online
        self.agent_links = agent_links.labels(*self._replica) if replica else agent_links
        self.actions = Counter(
            "remotehands_actions",
            "Device actions by name and result code.",
            (*extra, "action", "result"),
            registry=self.registry,
        )
        self.action_seconds = Histogram(
            "remotehands_action_seconds",
            "Time a device action took, from the request to its result.",
            (*extra, "action"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(self, action: str, result: str, seconds: float) -> None:
        """Count one device action and its duration."""
        # the labelled children kept here: prometheus_client's labels() validates and looks
        # them up under a lock on every call, which a bulk action over 10,000 devices feels
        counter = self._counters.get((action, result))
        if counter is None:
            counter = self._counters[action, result] = self.actions.labels(
                *self._replica, action, result
            )
        histogram = self._histograms.get(action)
        if histogram is None:
            histogram = self._histograms[action] = self.action_seconds.labels(
                *self._replica, action
            )
        counter.inc()
        histogram.observe(seconds)


def metrics_for(app: Starlette) -> ServerMetrics:
    """The :class:`ServerMetrics` of ``app``, made on first use."""
    metrics: ServerMetrics | None = getattr(app.state, "metrics", None)
    if metrics is None:
        metrics = app.state.metrics = ServerMetrics(getattr(app.state, "replica_id", None))
    return metrics


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text", "content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics_text(
    request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> Response:
    """Prometheus text exposition of this app's metrics.

    They count the whole fleet, so a token limited to tags (which sees only some devices)
    may not read them."""
    if principal.tags is not None:
        raise ForbiddenError(
            "the metrics count the whole fleet; a token limited to tags cannot read them: "
            "use a token without tags"
        )
    services = get_services(request)
    metrics = metrics_for(request.app)
    async with asyncio.timeout(_COUNT_TIMEOUT_S), services.db.session() as session:
        online = await session.scalar(
            select(func.count()).select_from(Device).where(Device.status == "online")
        )
    metrics.devices_online.set(online or 0)
    metrics.agent_links.set(services.hub.links)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
