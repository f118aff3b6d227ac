"""The event bus, and the /v1/events stream over a real WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pydantic
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from remotehands.protocol.events import (
    EVENT_TYPES,
    DeviceCreated,
    DeviceDeleted,
    DeviceEvent,
    DeviceHealth,
    DeviceOffline,
    DeviceOnline,
    DeviceUpdated,
    parse_event,
)
from remotehands.protocol.link import encode
from remotehands.server.events import InProcessEventBus
from tests.server.link_harness import LiveFleet, fleet_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio


def _events_url(fleet: LiveFleet, query: str = "") -> str:
    return fleet.ws_url.replace("/v1/agent/ws", "/v1/events") + query


async def _next(ws: ClientConnection, kind: str | None = None) -> dict[str, Any]:
    """The next event (of ``kind``, skipping others)."""
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if kind is None or event["type"] == kind:
            return event


async def test_the_stream_sees_devices_come_and_go(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1, tags=["lab"])
    token = await fleet.login("viewer")
    async with (
        connect(_events_url(fleet), additional_headers={"Authorization": f"Bearer {token}"}) as ws,
        fleet.agent(device) as agent,
    ):
        online = await _next(ws, "device.online")
        health = await _next(ws, "device.health")
        agent.stop_heartbeats()
        # A reply comes after every heartbeat sent before it; then silence past the bound, by
        # the server's link clock.
        assert await fleet.services.router.request(device.device_id, "screens", {}, 5)
        fleet.monotonic.advance(fleet.settings.offline_after_s)
        offline = await _next(ws, "device.offline")
    assert online["device_id"] == device.device_id
    assert online["tags"] == ["lab"]
    assert online["agent_version"] == "0.1.0-sim"
    assert online["at"].endswith("Z")
    assert health["health"]["cpu_percent"] == 1.5
    assert offline["device_id"] == device.device_id


async def test_query_token_and_type_filter(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    token = await fleet.login("viewer")
    url = _events_url(fleet, f"?token={token}&types=device.updated")
    async with connect(url) as ws, fleet.agent(device):
        renamed = await fleet.owner.patch(
            f"/v1/devices/{device.device_id}", json={"name": "renamed"}
        )
        assert renamed.status_code == 200
        event = await _next(ws)
    assert event["type"] == "device.updated"
    assert event["device"]["name"] == "renamed"


async def test_tag_limited_tokens_see_only_their_devices(fleet: LiveFleet) -> None:
    (lab,) = await fleet.enroll(1, tags=["lab"], name_prefix="lab")
    (prod,) = await fleet.enroll(1, tags=["prod"], name_prefix="prod")
    token = await fleet.api_token("viewer", tags=["prod"])
    url = _events_url(fleet, f"?token={token}&types=device.online")
    async with connect(url) as ws, fleet.agent(lab), fleet.agent(prod):
        event = await _next(ws)
    assert event["device_id"] == prod.device_id


async def test_events_follow_a_device_moved_to_other_tags(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1, tags=["lab"])
    token = await fleet.api_token("viewer", tags=["prod"])
    url = _events_url(fleet, f"?token={token}&types=device.health")
    async with connect(url) as ws, fleet.agent(device, heartbeat_interval_s=3600) as agent:
        moved = await fleet.owner.patch(f"/v1/devices/{device.device_id}", json={"tags": ["prod"]})
        assert moved.status_code == 200

        async def news() -> None:
            # health that changes at every beat (only news is published), until it shows
            for beat in itertools.count():
                health = {"uptime_seconds": beat, "cpu_percent": 90 * (beat % 2),
                          "memory_percent": 50}  # fmt: skip
                await agent.send_raw(encode({"type": "heartbeat", "health": health}))
                await asyncio.sleep(0.05)

        # Hidden while the device was in "lab"; its health shows once it is in "prod".
        beating = asyncio.create_task(news())
        try:
            event = await _next(ws)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
    assert event["device_id"] == device.device_id
    assert event["tags"] == ["prod"]


async def test_the_stream_needs_a_viewer(fleet: LiveFleet) -> None:
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        async with connect(_events_url(fleet)) as ws:
            await ws.recv()
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        async with connect(_events_url(fleet, "?token=rhs_wrong")) as ws:
            await ws.recv()


async def test_a_slow_subscriber_drops_events_and_never_blocks_publishers() -> None:
    async with InProcessEventBus(queue_size=3) as bus:
        with bus.subscribe() as slow, bus.subscribe(queue_size=100) as fast:
            for i in range(10):
                bus.publish({"type": "device.health", "device_id": f"dev_{i}"})
            assert slow.dropped == 7
            assert fast.dropped == 0
            assert bus.dropped == 7
            first = await slow.get()
            assert first is not None and first["device_id"] == "dev_0"
            assert "at" in first
        assert bus.subscribers == 0


async def test_a_subscription_can_take_only_some_types() -> None:
    async with InProcessEventBus(queue_size=2) as bus:
        with bus.subscribe(types=["device.online"]) as online_only:
            for _ in range(5):
                bus.publish({"type": "device.health", "device_id": "dev_1"})
            bus.publish({"type": "device.online", "device_id": "dev_1"})
            event = await online_only.get()
    assert online_only.dropped == 0
    assert event is not None and event["type"] == "device.online"


async def test_closing_the_bus_ends_every_stream() -> None:
    async with InProcessEventBus(queue_size=2) as bus:
        full, idle = bus.subscribe(), bus.subscribe()
        full_subscription = full.__enter__()
        bus.publish({"type": "device.online", "device_id": "dev_1"})
        bus.publish({"type": "device.online", "device_id": "dev_2"})
        idle_subscription = idle.__enter__()
        waiting = asyncio.create_task(idle_subscription.get())
    assert await asyncio.wait_for(waiting, 5) is None
    # The full queue made room for its end marker by losing its oldest event.
    assert [event["device_id"] async for event in full_subscription] == ["dev_2"]
    full.__exit__(None, None, None)
    idle.__exit__(None, None, None)


async def test_every_event_the_server_publishes_fits_its_model(fleet: LiveFleet) -> None:
    """Created, online, health, updated, offline and deleted, each read back as the model of
    its type in protocol.events (the shapes the SDK and the web console rely on)."""
    seen: list[DeviceEvent] = []
    with fleet.services.events.subscribe() as subscription:

        async def until(kind: type[DeviceEvent]) -> None:
            while not seen or not isinstance(seen[-1], kind):
                event = await asyncio.wait_for(subscription.get(), 5)
                assert event is not None
                seen.append(parse_event(event))

        (device,) = await fleet.enroll(1, tags=["lab"])
        async with fleet.agent(device) as agent:
            await until(DeviceHealth)
            renamed = await fleet.owner.patch(
                f"/v1/devices/{device.device_id}", json={"name": "renamed"}
            )
            assert renamed.status_code == 200
            await until(DeviceUpdated)
            agent.stop_heartbeats()
            assert await fleet.services.router.request(device.device_id, "screens", {}, 5)
            fleet.monotonic.advance(fleet.settings.offline_after_s)
            await until(DeviceOffline)
        deleted = await fleet.owner.delete(f"/v1/devices/{device.device_id}")
        assert deleted.status_code == 204
        await until(DeviceDeleted)
    kinds = {type(e) for e in seen}
    assert {DeviceCreated, DeviceOnline, DeviceHealth, DeviceUpdated, DeviceOffline} <= kinds
    assert all(e.device_id == device.device_id for e in seen)
    assert {e.type for e in seen} <= set(EVENT_TYPES)
    updated = next(e for e in seen if isinstance(e, DeviceUpdated))
    assert updated.device["name"] == "renamed" and updated.tags == ["lab"]


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        parse_event({"type": "device.exploded", "device_id": "d", "tags": [], "at": "x Z"})
    with pytest.raises(pydantic.ValidationError):
        parse_event(b'{"type": "device.deleted", "device_id": "d", "tags": []}')  # no "at"
