"""The fleet's events: what ``/v1/events`` streams and the server's event bus carries.

Every event names its ``type``, the ``device_id`` it is about, that device's ``tags`` (so that a
subscriber limited to some tags is served without a lookup) and when it happened (``at``,
ISO 8601 UTC with a ``Z``); each type adds its own fields. Publishers build the JSON-ready dict
on their hot path (a heartbeat's ``device.health`` must stay cheap at ten thousand links);
these models are the shapes clients (the SDK, the web console, the MCP server) rely on, and the
server's tests hold every published event to them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from remotehands.protocol.models import Health

__all__ = [
    "EVENT_TYPES",
    "DeviceCreated",
    "DeviceDeleted",
    "DeviceEvent",
    "DeviceHealth",
    "DeviceOffline",
    "DeviceOnline",
    "DeviceUpdated",
    "parse_event",
]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str
    tags: list[str]
    at: str = Field(pattern=r"Z$")


class DeviceCreated(_Event):
    """An agent registered with an enrollment token: a new device, offline until it links."""

    type: Literal["device.created"] = "device.created"
    name: str


class DeviceOnline(_Event):
    """A device's agent linked and said hello."""

    type: Literal["device.online"] = "device.online"
    name: str
    agent_version: str
    driver: str
    device_type: str
    capabilities: list[str]


class DeviceOffline(_Event):
    """A device's link ended (``reason`` says how: closed, silent, replaced, no heartbeat)."""

    type: Literal["device.offline"] = "device.offline"
    reason: str


class DeviceHealth(_Event):
    """A heartbeat's health figures."""

    type: Literal["device.health"] = "device.health"
    health: Health | None


class DeviceUpdated(_Event):
    """An admin changed a device (name, tags): ``device`` is the device as ``GET`` shows it."""

    type: Literal["device.updated"] = "device.updated"
    device: dict[str, Any]


class DeviceDeleted(_Event):
    """A device was removed; its agent was cut off."""

    type: Literal["device.deleted"] = "device.deleted"


DeviceEvent = Annotated[
    DeviceCreated | DeviceOnline | DeviceOffline | DeviceHealth | DeviceUpdated | DeviceDeleted,
    Field(discriminator="type"),
]
"""Any event of the fleet, told apart by ``type``."""

EVENT_TYPES: tuple[str, ...] = (
    "device.created", "device.online", "device.offline", "device.health", "device.updated",
    "device.deleted",
)  # fmt: skip

_ADAPTER: TypeAdapter[DeviceEvent] = TypeAdapter(DeviceEvent)


def parse_event(data: Any) -> DeviceEvent:
    """``data`` (a dict, or JSON text or bytes) as its event model; pydantic's
    ``ValidationError`` when it is not an event of the fleet."""
    if isinstance(data, str | bytes):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)
