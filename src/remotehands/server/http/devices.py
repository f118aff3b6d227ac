"""``/v1/devices``: the fleet's devices (the KVMFleet Devices API shape).

Tag-limited tokens see only devices with one of their tags; any other device is answered with
404, as if it did not exist. Changes are published on the event bus (``device.updated``,
``device.deleted``); deleting a device cuts its agent's link at once, and its credential no
longer authenticates.

The ``health`` of a device whose link this process holds is the link's live health (its last
heartbeat): the stored copy is written only when it changes meaningfully and when the device
goes offline (see :mod:`remotehands.server.link.hub`), so it may lag by small wobbles of load
and the uptime's progress. Other devices show the stored copy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)
from sqlalchemy import delete, func, select

from remotehands.errors import ForbiddenError, NotFoundError
from remotehands.protocol.link import CLOSE_CREDENTIAL_REFUSED
from remotehands.protocol.models import DeviceCondition
from remotehands.server.auth import Principal, can_see_device, require_role
from remotehands.server.db.models import Device
from remotehands.server.http.tokens import MAX_TAGS, check_tags
from remotehands.server.services import Services, get_services

__all__ = ["DeviceOut", "device_out", "router"]

router = APIRouter(prefix="/v1/devices", tags=["devices"])


class HealthOut(BaseModel):
    """What the agent's last heartbeat said about the machine, and (``device``, left out when
    the agent does not say) whether the device behind it can serve: a KVM that is
    unreachable or sees no video says why here while its agent's link is up."""

    uptime_seconds: float
    cpu_percent: float
    memory_percent: float
    device: DeviceCondition | None = None

    @model_serializer(mode="wrap")
    def _omit_unknown_device(self, handler: SerializerFunctionWrapHandler) -> object:
        data = handler(self)
        if isinstance(data, dict) and data.get("device", 0) is None:
            del data["device"]
        return data


class DeviceOut(BaseModel):
    """A device as the API shows it."""

    id: str
    name: str
    tags: list[str]
    status: str
    device_type: str | None
    agent_version: str | None
    last_seen: datetime | None
    health: HealthOut | None
    capabilities: list[str]
    screens: list[dict[str, Any]]


class DevicesOut(BaseModel):
    """A list of devices."""

    devices: list[DeviceOut]


class DevicePatch(BaseModel):
    """New name and/or tags (the tags replace the old ones)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a device name cannot be blank")
        return value.strip() if value is not None else None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_tags(value)


def _health(value: dict[str, Any] | None) -> HealthOut | None:
    if not value:
        return None
    try:
        return HealthOut.model_validate(value)
    except ValueError:
        return None


def device_out(device: Device, live_health: dict[str, Any] | None = None) -> DeviceOut:
    """The API view of a device row; ``live_health``, when given, is shown instead of the
    stored health (the health its live link last reported)."""
    return DeviceOut(
        id=device.id,
        name=device.name,
        tags=[str(t) for t in device.tags or []],
        status=device.status,
        device_type=device.device_type,
        agent_version=device.agent_version,
        last_seen=device.last_seen,
        health=_health(live_health if live_health is not None else device.health),
        capabilities=[str(c) for c in device.capabilities or []],
        screens=[s for s in device.screens or [] if isinstance(s, dict)],
    )


async def _visible(services: Services, principal: Principal, device_id: str) -> Device:
    async with services.db.session() as db:
        device = await db.get(Device, device_id)
    if device is None or not can_see_device(principal, device.tags):
        raise NotFoundError(f"no device {device_id}")
    return device


def _live_health(services: Services, device: Device) -> dict[str, Any] | None:
    """The health the device's link held here last reported, if it is online here."""
    if device.status != "online":
        return None
    link = services.hub.get(device.id)
    return link.health if link is not None else None


def _publish(services: Services, event: dict[str, Any]) -> None:
    services.events.publish(event)


@router.get("")
async def list_devices(
    request: Request,
    principal: Annotated[Principal, require_role("viewer")],
    status: Annotated[Literal["online", "offline"] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query(description="repeatable; all must match")] = None,
    search: Annotated[str | None, Query(max_length=128, description="part of the name")] = None,
) -> DevicesOut:
    """The devices the caller may see, by name; filters combine."""
    services = get_services(request)
    statement = select(Device)
    if status is not None:
        statement = statement.where(Device.status == status)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(func.lower(Device.name).like(f"%{escaped}%", escape="\\"))
    statement = statement.order_by(Device.name, Device.id)
    async with services.db.session() as db:
        devices = (await db.scalars(statement)).all()
    wanted = set(tag or ())
    return DevicesOut(
        devices=[
            device_out(d, _live_health(services, d))
            for d in devices
            if wanted <= set(d.tags or ()) and can_see_device(principal, d.tags)
        ]
    )


@router.get("/{device_id}")
async def get_device(
    device_id: str, request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> DeviceOut:
    """One device."""
    services = get_services(request)
    device = await _visible(services, principal, device_id)
    return device_out(device, _live_health(services, device))


@router.patch("/{device_id}")
async def update_device(
    device_id: str,
    body: DevicePatch,
    request: Request,
    principal: Annotated[Principal, require_role("admin", writes=True)],
) -> DeviceOut:
    """Rename a device and/or replace its tags."""
    services = get_services(request)
    await _visible(services, principal, device_id)
    if body.tags is not None and not can_see_device(principal, body.tags):
        raise ForbiddenError(
            "this token is limited to some tags: the device must keep at least one of them"
        )
    async with services.db.session() as db:
        device = await db.get(Device, device_id)
        if device is None:
            raise NotFoundError(f"no device {device_id}")
        before = {"name": device.name, "tags": list(device.tags or [])}
        if body.name is not None:
            device.name = body.name
        if body.tags is not None:
            device.tags = body.tags
        await db.commit()
    out = device_out(device, _live_health(services, device))
    changes = body.model_dump(exclude_none=True)
    await services.audit.record_for(
        principal,
        "device.update",
        device_id=device_id,
        params={**changes, "before": before},
    )
    _publish(
        services,
        {
            "type": "device.updated",
            "device_id": device_id,
            "tags": out.tags,
            "device": out.model_dump(mode="json"),
        },
    )
    return out


@router.delete("/{device_id}", status_code=204)
async def delete_device(
    device_id: str,
    request: Request,
    principal: Annotated[Principal, require_role("admin", writes=True)],
) -> Response:
    """Remove a device; its agent is disconnected and its credential stops working."""
    services = get_services(request)
    device = await _visible(services, principal, device_id)
    async with services.db.session() as db:
        await db.execute(delete(Device).where(Device.id == device_id))
        await db.commit()
    await services.hub.disconnect(device_id, CLOSE_CREDENTIAL_REFUSED, "device deleted")
    await services.audit.record_for(
        principal,
        "device.delete",
        device_id=device_id,
        params={"name": device.name, "tags": list(device.tags or [])},
    )
    _publish(
        services,
        {"type": "device.deleted", "device_id": device_id, "tags": list(device.tags or [])},
    )
    return Response(status_code=204)
