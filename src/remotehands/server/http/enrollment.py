"""Enrolling devices: an admin creates a single-use token, the agent trades it for a credential.

``POST /v1/devices/enrollment`` (admin) returns ``ekvent_...`` with an ``install_cmd`` that
installs the agent from this server and starts it with the token. ``POST /v1/agent/register``
(no user; the token is the authorisation) consumes the token in one conditional ``UPDATE``
(unused and unexpired), creates the device in the same transaction and returns the agent's
credential ``agt_...``: of two registrations racing with one token, exactly one wins. Failed
registrations are limited per client address.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update

from remotehands.errors import AuthError, ForbiddenError
from remotehands.protocol.link import LINK_PATH
from remotehands.server.auth import (
    AGENT_PREFIX,
    ENROLLMENT_PREFIX,
    Principal,
    can_see_device,
    client_ip,
    hash_secret,
    new_secret,
    require_role,
)
from remotehands.server.db.models import Device, EnrollmentToken, new_id
from remotehands.server.http.tokens import MAX_TAGS, check_tags
from remotehands.server.services import Services, get_services

__all__ = ["install_command", "router"]

router = APIRouter(tags=["enrollment"])


class EnrollmentIn(BaseModel):
    """What the new device should be called and tagged (both optional)."""

    model_config = ConfigDict(extra="forbid")

    suggested_name: str | None = Field(None, min_length=1, max_length=128)
    suggested_tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)

    @field_validator("suggested_tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return check_tags(value)


class EnrollmentOut(BaseModel):
    """A single-use enrollment token and the command that uses it."""

    token: str
    expires_at: datetime
    install_cmd: str


class RegisterIn(BaseModel):
    """An agent's registration with an enrollment token."""

    model_config = ConfigDict(extra="forbid")

    enrollment_token: str = Field(min_length=1, max_length=256)
    hardware_id: str = Field(min_length=1, max_length=256)
    device_type: str | None = Field(None, min_length=1, max_length=64)
    name: str | None = Field(None, min_length=1, max_length=128)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    """Tags the agent's configuration gives the device, added to the enrollment token's."""

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return check_tags(value)


class RegisterOut(BaseModel):
    """The device's id, the agent's credential (shown once) and where to connect."""

    device_id: str
    auth_token: str
    ws_url: str


def install_command(services: Services, token: str) -> str:
    """The shell command that installs the agent from this server and enrolls it; with TLS,
    curl pins the server's public key and the agent its certificate (``--server-fingerprint``),
    so a self-signed certificate is safe to use."""
    base = services.settings.base_url
    url, quoted = shlex.quote(base + "/install"), shlex.quote(token)
    tls = services.tls
    if tls is None:
        return f"curl -sSL {url} | sh -s -- --token {quoted}"
    return (
        f"curl -sSLk --pinnedpubkey {shlex.quote(tls.public_key_pin)} {url} | sh -s -- "
        f"--token {quoted} -- --server-fingerprint {tls.fingerprint}"
    )


@router.post("/v1/devices/enrollment", status_code=201)
async def create_enrollment(
    request: Request,
    principal: Annotated[Principal, require_role("admin", writes=True)],
    body: Annotated[EnrollmentIn | None, Body()] = None,
) -> EnrollmentOut:
    """A single-use token for one new device, valid ``enrollment_ttl_s`` (30 min)."""
    body = body or EnrollmentIn()
    if principal.tags is not None and not can_see_device(principal, body.suggested_tags):
        raise ForbiddenError(
            "this token is limited to some tags: the new device must get at least one of them"
        )
    services = get_services(request)
    token = new_secret(ENROLLMENT_PREFIX)
    now = services.clock()
    row = EnrollmentToken(
        id=new_id("enr"),
        token_hash=hash_secret(token),
        suggested_name=body.suggested_name,
        suggested_tags=body.suggested_tags,
        created_by=principal.actor,
        created_at=now,
        expires_at=now + timedelta(seconds=services.settings.enrollment_ttl_s),
        used_at=None,
        device_id=None,
    )
    async with services.db.session() as db:
        db.add(row)
        await db.commit()
    await services.audit.record_for(
        principal,
        "enrollment.create",
        params={
            "enrollment_id": row.id,
            "suggested_name": body.suggested_name,
            "suggested_tags": body.suggested_tags,
            "expires_at": row.expires_at.isoformat(),
        },
    )
    return EnrollmentOut(
        token=token, expires_at=row.expires_at, install_cmd=install_command(services, token)
    )


@router.post("/v1/agent/register")
async def register(body: RegisterIn, request: Request) -> RegisterOut:
    """Trade an enrollment token for a device and its agent credential (no user auth)."""
    services = get_services(request)
    ip = client_ip(request)
    services.register_limiter.check(ip, "registrations")
    async with services.admission.admit("register"):
        return await _register(services, body, ip)


async def _register(services: Services, body: RegisterIn, ip: str) -> RegisterOut:
    digest = hash_secret(body.enrollment_token)
    device_id = new_id("dev")
    credential = new_secret(AGENT_PREFIX)
    now = services.clock()
    async with services.db.session() as db:
        claimed = (
            await db.execute(
                update(EnrollmentToken)
                .where(
                    EnrollmentToken.token_hash == digest,
                    EnrollmentToken.used_at.is_(None),
                    EnrollmentToken.expires_at > now,
                )
                .values(used_at=now, device_id=device_id)
                .returning(
                    EnrollmentToken.id,
                    EnrollmentToken.suggested_name,
                    EnrollmentToken.suggested_tags,
                )
            )
        ).first()
        if claimed is None:
            await db.rollback()
        else:
            name = claimed.suggested_name or body.name or body.hardware_id
            # the agent may add tags, never drop the ones an admin gave the token
            tags = [str(t) for t in claimed.suggested_tags or []]
            tags += [t for t in body.tags if t not in tags]
            db.add(
                Device(
                    id=device_id,
                    name=name[:128],
                    tags=tags,
                    status="offline",
                    device_type=body.device_type,
                    driver=None,
                    agent_version=None,
                    last_seen=None,
                    health=None,
                    capabilities=[],
                    screens=[],
                    hardware_id=body.hardware_id,
                    credential_hash=hash_secret(credential),
                    created_at=now,
                )
            )
            await db.commit()
    if claimed is None:
        services.register_limiter.failed(ip)
        reason = await _why_refused(services, digest, now)
        await services.audit.record(
            actor=f"ip:{ip}",
            actor_kind="agent",
            action="device.register",
            params={"hardware_id": body.hardware_id},
            result=AuthError.code,
            details=reason,
        )
        raise AuthError(reason)
    await services.audit.record(
        actor=device_id,
        actor_kind="agent",
        action="device.register",
        device_id=device_id,
        params={
            "enrollment_id": claimed.id,
            "hardware_id": body.hardware_id,
            "name": name,
            "tags": tags,
            "device_type": body.device_type,
            "from": ip,
        },
    )
    services.events.publish(
        {"type": "device.created", "device_id": device_id, "tags": tags, "name": name}
    )
    return RegisterOut(
        device_id=device_id,
        auth_token=credential,
        ws_url=services.settings.ws_base_url + LINK_PATH,
    )


async def _why_refused(services: Services, digest: str, now: datetime) -> str:
    async with services.db.session() as db:
        token = await db.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == digest))
    if token is None:
        return "unknown enrollment token; create one with POST /v1/devices/enrollment"
    if token.used_at is not None:
        return (
            "this enrollment token was already used (they are single-use); create a new one "
            "with POST /v1/devices/enrollment"
        )
    if token.expires_at <= now:
        return (
            f"this enrollment token expired at {token.expires_at.isoformat()}; create a new one "
            "with POST /v1/devices/enrollment"
        )
    return "the enrollment token could not be used; try again"
