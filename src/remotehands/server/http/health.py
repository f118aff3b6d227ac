"""``GET /health``: is this server process able to serve (public, for load balancers)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from remotehands.server.services import get_services

__all__ = ["router"]

logger = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """``{"status": "ok", "db": "ok", "links": N}``; 503 with ``"db": "error"`` when the
    database does not answer."""
    services = get_services(request)
    db_ok = True
    try:
        async with asyncio.timeout(_DB_TIMEOUT_S), services.db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        logger.warning("health check: the database does not answer", exc_info=True)
        db_ok = False
    return JSONResponse(
        {
            "status": "ok" if db_ok else "degraded",
            "db": "ok" if db_ok else "error",
            "links": services.hub.links,
        },
        status_code=200 if db_ok else 503,
    )
