"""The agent link, server side: real uvicorn on loopback, real WebSocket agents, real SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect

from remotehands.errors import AuthError, BusyError, DeviceOfflineError, DeviceTimeoutError
from remotehands.protocol.link import (
    CLOSE_CREDENTIAL_REFUSED,
    CLOSE_FENCED,
    CLOSE_PROTOCOL_ERROR,
    encode,
)
from remotehands.server.db.engine import Database
from remotehands.server.db.models import Device
from remotehands.server.link import hub as hub_module
from remotehands.testing.simagent import SimulatedAgent
from remotehands.testing.xapps import eventually
from tests.server.link_harness import HEARTBEAT_S, LiveFleet, fleet_fixture, running_fleet  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio

OFFLINE_BOUND_S = 3 * HEARTBEAT_S
"""Silence (by ``fleet.monotonic``) after which a link is closed and its device offline."""
WAIT_S = 10.0
"""How long a test waits for a condition the server reaches on its own (real time): a bound
on a hung test, not a window the server must meet."""


async def test_hello_marks_the_device_online_and_publishes_it(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1, tags=["lab"])
    with fleet.services.events.subscribe() as events:
        async with fleet.agent(
            device,
            capabilities=["screen", "mouse"],
            screens=[{"id": 0, "width": 1280, "height": 720}],
            agent_version="9.9.9",
            hardware_id="hw-42",
        ) as agent:
            assert agent.device_id == device.device_id
            assert agent.welcome == {
                "type": "welcome",
                "device_id": device.device_id,
                "heartbeat_interval_s": HEARTBEAT_S,
            }
            row = await fleet.device(device.device_id)
            assert row is not None
            assert row.status == "online"
            assert row.agent_version == "9.9.9"
            assert row.driver == "sim"
            assert row.device_type == "sim"
            assert row.capabilities == ["screen", "mouse"]
            assert row.screens == [{"id": 0, "width": 1280, "height": 720, "x": 0, "y": 0}]
            assert row.hardware_id == "hw-42"
            assert row.health is not None and row.health["memory_percent"] == 12.5
            assert row.last_seen is not None
            assert datetime.now(UTC) - row.last_seen < timedelta(seconds=5)
            assert fleet.services.router.is_online(device.device_id)
            event = await asyncio.wait_for(events.get(), 5)
    assert event is not None
    assert event["type"] == "device.online"
    assert event["device_id"] == device.device_id
    assert event["tags"] == ["lab"]
    assert event["at"].endswith("Z")


async def test_heartbeats_update_health_and_last_seen(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    with fleet.services.events.subscribe() as events:
        async with fleet.agent(device) as agent:
            first = await fleet.device(device.device_id)
            assert first is not None and first.last_seen is not None and first.health is not None
            seen, uptime = first.last_seen, first.health["uptime_seconds"]

            async def refreshed() -> bool:
                row = await fleet.device(device.device_id)
                assert row is not None and row.last_seen is not None and row.health is not None
                return row.last_seen > seen

            await eventually(refreshed)
            assert agent.heartbeats_sent >= 1
            # the live health, from the link (the stored one is written on news: see
            # test_link_scale's test_live_health_is_shown_while_online_and_stored_on_change)
            shown = await fleet.owner.get(f"/v1/devices/{device.device_id}")
            assert shown.json()["health"]["uptime_seconds"] > uptime
            while (event := await asyncio.wait_for(events.get(), 5)) is not None:
                if event["type"] == "device.health":
                    break
    assert event is not None
    assert event["device_id"] == device.device_id
    assert set(event["health"]) == {"uptime_seconds", "cpu_percent", "memory_percent"}


async def test_missed_heartbeats_mark_the_device_offline_within_the_bound(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    hub, router = fleet.services.hub, fleet.services.router
    with fleet.services.events.subscribe() as events:
        async with fleet.agent(device) as agent:
            agent.stop_heartbeats()
            # A reply comes after every heartbeat sent before it: from here on, silence.
            assert await router.request(device.device_id, "screens", {}, 5)
            fleet.monotonic.advance(OFFLINE_BOUND_S - HEARTBEAT_S / 2)
            assert await hub.close_silent() == []
            assert router.is_online(device.device_id)
            fleet.monotonic.advance(HEARTBEAT_S)
            await fleet.wait_status(device.device_id, "offline", WAIT_S)
            assert await agent.wait_closed(WAIT_S) == 1001
            assert not router.is_online(device.device_id)
        events.close()
        kinds = [event["type"] async for event in events]
    assert kinds[0] == "device.online"
    assert kinds[-1] == "device.offline"


async def test_a_vanished_agent_goes_offline(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    agent = fleet.agent(device)
    await agent.connect()
    await agent.drop()
    # Whether or not the server noticed the dropped connection, silence ends the link.
    fleet.monotonic.advance(OFFLINE_BOUND_S)
    await fleet.wait_status(device.device_id, "offline", WAIT_S)


async def test_requests_fail_fast_when_offline_and_time_out_when_unanswered(
    fleet: LiveFleet,
) -> None:
    (device,) = await fleet.enroll(1)
    router = fleet.services.router
    # Fast: well before the request's own 30 s timeout.
    with pytest.raises(DeviceOfflineError):
        async with asyncio.timeout(WAIT_S):
            await router.request(device.device_id, "mouse.move", {"x": 1, "y": 1}, 30)
    async with fleet.agent(device) as agent:
        assert await router.request(device.device_id, "mouse.move", {"x": 1, "y": 1}, 5) == {
            "status": "ok"
        }
        agent.stop_answering()
        with pytest.raises(DeviceTimeoutError):
            await router.request(device.device_id, "mouse.move", {"x": 2, "y": 2}, 0.3)
        assert agent.requests[-1]["params"] == {"x": 2, "y": 2}
        assert agent.requests[-1]["timeout_ms"] == 300
        # A reply that comes after its request timed out is only logged.
        await agent.send_raw(encode({"type": "reply", "id": agent.requests[-1]["id"]}))
        agent.answering = True
        assert await router.request(device.device_id, "screens", {}, 5) == {
            "screens": [{"id": 0, "width": 1920, "height": 1080}]
        }


async def test_a_call_answers_through_its_callback(fleet: LiveFleet) -> None:
    """AgentLink.call: the reply, a timeout and the link's end each reach the callback once;
    a call that cannot be written at once starts nothing."""
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device) as agent:
        link = fleet.services.hub.get(device.device_id)
        assert link is not None
        outcomes: list[tuple[object, object]] = []

        def done(result: object, error: object) -> None:
            outcomes.append((result, error))

        assert link.call("mouse.move", {"x": 1, "y": 2}, 5, done)
        await eventually(lambda: len(outcomes) == 1, WAIT_S)
        assert outcomes[0] == ({"status": "ok"}, None)
        assert agent.requests[-1]["params"] == {"x": 1, "y": 2}
        assert link.pending == 0

        async with link._send_lock:  # another writer: nothing starts, done is never called
            assert not link.call("mouse.move", {"x": 3, "y": 3}, 5, done)
        assert agent.requests[-1]["params"] == {"x": 1, "y": 2}

        agent.stop_answering()
        assert link.call("mouse.move", {"x": 4, "y": 4}, 0.2, done)
        await eventually(lambda: len(outcomes) == 2, WAIT_S)
        result, error = outcomes[1]
        assert result is None and isinstance(error, DeviceTimeoutError)
        assert "did not answer mouse.move within 0.2 s" in str(error)
        assert link.pending == 0

        assert link.call("mouse.move", {"x": 5, "y": 5}, 60, done)
        await link.close(1001, "test")
        await eventually(lambda: len(outcomes) == 3, WAIT_S)
        assert isinstance(outcomes[2][1], DeviceOfflineError)
        assert not link.call("mouse.move", {"x": 6, "y": 6}, 5, done)  # closed
        assert len(outcomes) == 3  # each call settled once


async def test_an_agent_that_stops_reading_loses_its_link(
    fleet: LiveFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "SEND_TIMEOUT_S", 0.5)
    (device,) = await fleet.enroll(1)
    router = fleet.services.router
    async with fleet.agent(device) as agent:
        link = fleet.services.hub.get(device.device_id)
        assert link is not None
        # uvicorn's socket writes at once when a write cannot wait (the hub skips its lock)
        assert link._transport._send_now is not None  # type: ignore[attr-defined]
        agent.stop_reading()
        # far more than the sockets' buffers hold: the server's writes must wait, then give up
        big = {"text": "x" * 1_000_000}
        requests = [
            asyncio.create_task(router.request(device.device_id, "keyboard.type", big, 60))
            for _ in range(48)
        ]
        async with asyncio.timeout(WAIT_S):
            results = await asyncio.gather(*requests, return_exceptions=True)
        assert all(isinstance(r, DeviceOfflineError) for r in results), results
        assert any("stopped reading" in str(r) for r in results)
        # the socket is full (or closed by now): nothing more is written at once
        with contextlib.suppress(DeviceOfflineError):
            assert not link._transport.send_now(encode({"type": "request", "id": "late"}))
        await fleet.wait_status(device.device_id, "offline", WAIT_S)


async def test_agent_errors_come_back_as_the_same_error(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)

    def busy(params: dict[str, object]) -> object:
        raise BusyError("a sequence holds the device")

    async with fleet.agent(device, handlers={"mouse.click": busy}):
        with pytest.raises(BusyError, match="a sequence holds the device"):
            await fleet.services.router.request(device.device_id, "mouse.click", {}, 5)


async def test_images_travel_as_binary_frames_and_arrive_as_bytes(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device, image_bytes=300_000) as agent:
        result = await fleet.services.router.request(device.device_id, "screenshot", {}, 5)
    assert isinstance(result["image"], bytes)
    assert result["image"] == agent.image
    assert len(result["image"]) == 300_000


async def test_a_second_connection_fences_the_first(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    router = fleet.services.router
    async with fleet.agent(device) as old:
        old.stop_answering()
        pending = asyncio.create_task(router.request(device.device_id, "mouse.move", {}, 30))

        async def reached() -> bool:
            return old.requests_seen == 1

        await eventually(reached)
        async with fleet.agent(device) as new:
            assert await old.wait_closed(5) == CLOSE_FENCED
            with pytest.raises(DeviceOfflineError):
                await asyncio.wait_for(pending, 5)
            assert await router.request(device.device_id, "mouse.move", {}, 5) == {"status": "ok"}
            assert new.requests_seen == 1
            # The old link's end must not mark the device offline under the new one.
            row = await fleet.device(device.device_id)
            assert row is not None and row.status == "online"
            assert fleet.services.hub.links == 1


async def test_deleting_a_device_cuts_its_link_and_refuses_its_credential(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device) as agent:
        response = await fleet.owner.delete(f"/v1/devices/{device.device_id}")
        assert response.status_code == 204
        assert await agent.wait_closed(2) == CLOSE_CREDENTIAL_REFUSED
    assert fleet.services.hub.links == 0
    again = fleet.agent(device)
    with pytest.raises(AuthError):
        await again.connect()
    assert again.close_code == CLOSE_CREDENTIAL_REFUSED


@pytest.mark.parametrize("credential", ["agt_not-a-real-one", "rht_wrong-kind", ""])
async def test_unknown_credentials_are_refused(fleet: LiveFleet, credential: str) -> None:
    agent = SimulatedAgent(fleet.ws_url, credential)
    with pytest.raises(AuthError):
        await agent.connect()
    assert agent.close_code == CLOSE_CREDENTIAL_REFUSED
    assert fleet.services.hub.links == 0


async def test_a_hello_for_another_device_is_refused(fleet: LiveFleet) -> None:
    first, second = await fleet.enroll(2)
    agent = fleet.agent(first, device_id_hint=second.device_id)
    with pytest.raises(AuthError):
        await agent.connect()
    row = await fleet.device(second.device_id)
    assert row is not None and row.status == "offline"


@pytest.mark.parametrize(
    "first_frame",
    [
        "not json",
        b"\x00\x00\x00\x02{}",
        '{"type": "heartbeat", "health": {"uptime_seconds": 1, "cpu_percent": 1, '
        '"memory_percent": 1}}',
        '{"type": "hello"}',
    ],
)
async def test_a_bad_hello_is_a_protocol_error(fleet: LiveFleet, first_frame: str | bytes) -> None:
    (device,) = await fleet.enroll(1)
    async with connect(
        fleet.ws_url,
        additional_headers={"Authorization": f"Bearer {device.credential}"},
        compression=None,
    ) as ws:
        await ws.send(first_frame)
        await ws.wait_closed()
    assert ws.close_code == CLOSE_PROTOCOL_ERROR
    row = await fleet.device(device.device_id)
    assert row is not None and row.status == "offline"


@pytest.mark.parametrize(
    "garbage",
    [
        "this is not JSON {",
        '{"no": "type"}',
        '{"type": "surprise"}',
        '{"type": "heartbeat", "health": "fine"}',
        '{"type": "heartbeat"}',
        '{"type": "heartbeat", "health": {"uptime_seconds": 1, "cpu_percent": 1}}',
        '{"type": "heartbeat", "health": {"uptime_seconds": "soon", "cpu_percent": 1, '
        '"memory_percent": 1}}',
        '{"type": "heartbeat", "health": {"uptime_seconds": 1, "cpu_percent": 1, '
        '"memory_percent": null}}',
        '{"type": "reply"}',
        b"\x00\x00\x00\x05",
        b"\x00\x00\x00\x02{}extra",
    ],
)
async def test_garbage_closes_only_that_link(fleet: LiveFleet, garbage: str | bytes) -> None:
    bad, good = await fleet.enroll(2)
    router = fleet.services.router
    async with fleet.agent(bad) as bad_agent, fleet.agent(good):
        await bad_agent.send_raw(garbage)
        assert await bad_agent.wait_closed(5) == CLOSE_PROTOCOL_ERROR
        await fleet.wait_status(bad.device_id, "offline")
        assert await router.request(good.device_id, "mouse.move", {}, 5) == {"status": "ok"}
        health = await fleet.client().get("/health")
        assert health.json() == {"status": "ok", "db": "ok", "links": 1}


async def test_a_reply_to_an_unknown_request_is_ignored(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device) as agent:
        await agent.send_raw(encode({"type": "reply", "id": "no-such-request", "result": 1}))
        assert await fleet.services.router.request(device.device_id, "screens", {}, 5)
        assert agent.close_code is None


async def test_server_shutdown_marks_held_devices_offline(
    tmp_path: Path, database_url: str
) -> None:
    async with running_fleet(tmp_path, database_url=database_url) as fleet:
        devices = await fleet.enroll(3)
        agents = [fleet.agent(device) for device in devices]
        for agent in agents:
            await agent.connect()
        services = fleet.services
    # The server is stopped and its database closed: read the database afresh.
    async with await Database.open(services.settings.db_url) as db, db.session() as session:
        for device in devices:
            row = await session.get(Device, device.device_id)
            assert row is not None and row.status == "offline"
    for agent in agents:
        assert await agent.wait_closed(5) is not None
        await agent.disconnect()


async def test_devices_left_online_without_a_link_are_swept_offline(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    stale = datetime.now(UTC) - timedelta(minutes=5)
    async with fleet.services.db.session() as session:
        await session.execute(
            update(Device)
            .where(Device.id == device.device_id)
            .values(status="online", last_seen=stale)
        )
        await session.commit()
    with fleet.services.events.subscribe() as events:
        # The sweeper runs every heartbeat interval; waiting for it has no tight window.
        await fleet.wait_status(device.device_id, "offline", WAIT_S)
        event = await asyncio.wait_for(events.get(), 5)
    assert event is not None
    assert event["type"] == "device.offline"
    assert event["device_id"] == device.device_id
