"""``GET /v1/audit``: the audit log, newest first (admins and the owner)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
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
