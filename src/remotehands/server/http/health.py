"""``GET /health``: is this server process able to serve (public, for load balancers).

It reads the database *and* writes to it: a full disk or a read-only database file still
answers reads, and a health check that only read would report a server that cannot record
anything (nor audit what it does) as healthy. The write rewrites the schema version row with
its own value, so nothing changes; its outcome is kept for :data:`WRITE_CHECK_EVERY_S`, so a
load balancer polling many times a second costs one write every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from remotehands.server.cluster.router import NatsRouter
from remotehands.server.db.storage import storage_problem
from remotehands.server.services import get_services

__all__ = ["WRITE_CHECK_EVERY_S", "router"]

logger = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0
WRITE_CHECK_EVERY_S = 2.0
"""How long the outcome of the write check is reused."""

router = APIRouter()


async def _writable(request: Request) -> str | None:
    """None when the database took a write, else what is wrong and what to do."""
    state = request.app.state
    cached: tuple[float, str | None] | None = getattr(state, "health_write", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < WRITE_CHECK_EVERY_S:
        return cached[1]
    services = get_services(request)
    problem: str | None = None
    try:
        async with asyncio.timeout(_DB_TIMEOUT_S), services.db.session() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = version_num"))
            await session.commit()
    except (SQLAlchemyError, OSError, TimeoutError) as err:
        problem = storage_problem(err)
        logger.warning("health check: the database does not take writes: %s", problem)
    state.health_write = (now, problem)
    return problem


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """``{"status": "ok", "db": "ok", "links": N}`` when the database answers and takes
    writes; 503 with ``"db": "error"`` when it does not answer, ``"db": "not_writable"`` when
    it answers but takes no writes, both with ``"problem"`` (what is wrong, what to do).
    ``"audit_spooled": N`` counts audit entries waiting for the database, when there are.
    A replica of several adds ``"replica"`` (its id) and ``"nats"`` (``ok`` or ``down``)."""
    services = get_services(request)
    db = "ok"
    problem: str | None = None
    try:
        async with asyncio.timeout(_DB_TIMEOUT_S), services.db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as err:
        logger.warning("health check: the database does not answer", exc_info=True)
        db, problem = "error", storage_problem(err)
    if db == "ok":
        problem = await _writable(request)
        if problem is not None:
            db = "not_writable"
    body: dict[str, object] = {
        "status": "ok" if db == "ok" else "degraded",
        "db": db,
        "links": services.hub.links,
    }
    if services.replica_id is not None:
        # one of several replicas: which one, and whether it reaches the others (without NATS
        # it still serves its own devices, so the status stays "ok")
        body["replica"] = services.replica_id
        router = services.router
        body["nats"] = "ok" if isinstance(router, NatsRouter) and router.connected else "down"
    if problem is not None:
        body["problem"] = problem
    if services.audit.spooled:
        body["audit_spooled"] = services.audit.spooled
    return JSONResponse(body, status_code=200 if db == "ok" else 503)
