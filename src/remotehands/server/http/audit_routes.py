"""``GET /v1/audit``: the audit log, newest first (admins and the owner); ``GET
/v1/audit/verify``: whether its hash chain is whole; ``GET /v1/audit/export``: all of it as JSON
lines, oldest first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from remotehands.server.auth import Principal, require_role, require_unrestricted
from remotehands.server.services import get_services

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    """One audited action."""

    id: int
    at: datetime
    actor: str
    actor_kind: str
    device_id: str | None
    action: str
    params: dict[str, Any] | None
    result: str
    duration_ms: float
    details: str | None


class AuditOut(BaseModel):
    """Entries, newest first."""

    entries: list[AuditEntryOut]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # a time without a zone is taken as UTC


@router.get("")
async def list_audit(
    request: Request,
    principal: Annotated[Principal, require_role("admin")],
    device_id: Annotated[str | None, Query()] = None,
    actor: Annotated[str | None, Query(description="a user; includes their API tokens")] = None,
    action: Annotated[str | None, Query()] = None,
    result: Annotated[str | None, Query(description="ok or an error code")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditOut:
    """Audit entries matching every given filter, newest first."""
    require_unrestricted(principal, "the audit log")
    audit = get_services(request).audit
    # entries of this process still queued for the writer are part of the answer
    await audit.flush()
    entries = await audit.query(
        device_id=device_id,
        actor=actor,
        action=action,
        result=result,
        since=_utc(since),
        until=_utc(until),
        limit=limit,
    )
    return AuditOut(
        entries=[
            AuditEntryOut(
                id=e.id,
                at=e.at,
                actor=e.actor,
                actor_kind=e.actor_kind,
                device_id=e.device_id,
                action=e.action,
                params=e.params,
                result=e.result,
                duration_ms=e.duration_ms,
                details=e.details,
            )
            for e in entries
        ]
    )


class VerifyOut(BaseModel):
    """Whether every entry of the chain matches its hash and follows the one before."""

    ok: bool
    entries: int
    first_bad: int | None


@router.get("/verify")
async def verify_audit(
    request: Request, principal: Annotated[Principal, require_role("admin")]
) -> VerifyOut:
    """Check the audit log's hash chain; ``first_bad`` is the id of the first entry that was
    edited (or follows a deleted one)."""
    require_unrestricted(principal, "the audit log")
    check = await get_services(request).audit.verify()
    return VerifyOut(ok=check.ok, entries=check.entries, first_bad=check.first_bad)


@router.get("/export", response_class=StreamingResponse)
async def export_audit(
    request: Request, principal: Annotated[Principal, require_role("admin")]
) -> StreamingResponse:
    """Every entry, oldest first, one JSON object a line (``application/x-ndjson``), with
    ``prev_hash`` and ``hash`` so that the export can be checked on its own."""
    require_unrestricted(principal, "the audit log")
    audit = get_services(request).audit
    await audit.flush()

    async def lines() -> AsyncIterator[bytes]:
        async for entry in audit.export():
            yield orjson.dumps(entry) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
