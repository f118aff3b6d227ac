"""The agent link at scale's edges, on a live server (SQLite and PostgreSQL): a crowd of links
dropped at once all go offline (written in batches, none left online, nothing timing out), an
older agent's hello still links, a handshake past the admission queue is answered ``503`` with
``Retry-After``, and ``device.health`` is published only when health changed meaningfully."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pydantic
import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from remotehands.protocol.link import Heartbeat, decode, encode, heartbeat_health
from remotehands.server.admission import Admission
from remotehands.server.db.models import Device
from remotehands.server.events import EventSubscription
from remotehands.server.link.hub import HEALTH_STEP_PERCENT, health_changed
from remotehands.testing.simagent import run_many
from remotehands.testing.xapps import eventually
from tests.server.link_harness import LiveFleet, fleet_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio

CROWD = 40


async def _online(fleet: LiveFleet) -> int:
    async with fleet.services.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Device).where(Device.status == "online")
        )
    return int(count or 0)


async def test_a_crowd_of_links_dropped_at_once_all_go_offline(
    fleet: LiveFleet, caplog: pytest.LogCaptureFixture
) -> None:
    devices = await fleet.enroll(CROWD)
    hub = fleet.services.hub
    with fleet.services.events.subscribe(types=("device.offline",)) as events:
        async with run_many(fleet.ws_url, [d.credential for d in devices]) as agents:
            assert hub.links == CROWD
            assert await _online(fleet) == CROWD
            with caplog.at_level(logging.ERROR, logger="remotehands.server.link.hub"):
                # every machine vanishes without a close frame, all at once
                for agent in agents:
                    assert agent.device_id is not None
                await asyncio.gather(*(agent.drop() for agent in agents))
                await eventually(lambda: hub.links == 0, timeout=20)

                async def all_offline() -> bool:
                    return await _online(fleet) == 0

                await eventually(all_offline, timeout=20)
                offline: set[str] = set()
                while len(offline) < CROWD:
                    event = await asyncio.wait_for(events.get(), 10)
                    assert event is not None
                    offline.add(str(event["device_id"]))
            assert offline == {d.device_id for d in devices}
            # no write timed out or failed: none was left for the sweeper
            assert not [r for r in caplog.records if "offline" in r.getMessage()]
            assert hub.offline_batches < CROWD  # written together, not one session each


async def test_an_older_agents_hello_still_links(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    # the hello of the first agents: no device id hint, no screens, no health, and the mouse
    # capability under its old name
    hello = {
        "type": "hello",
        "device_id": "",
        "agent_version": "0.1.0",
        "driver": "x11",
        "device_type": "desktop",
        "capabilities": ["screen", "pointer"],
        "hardware_id": "hw-old",
    }
    async with connect(
        fleet.ws_url, additional_headers={"Authorization": f"Bearer {device.credential}"}
    ) as ws:
        await ws.send(encode(hello))
        welcome = decode(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome"
        assert welcome["device_id"] == device.device_id
        assert welcome["heartbeat_interval_s"] == fleet.settings.heartbeat_interval_s
        await fleet.wait_status(device.device_id, "online")
    row = await fleet.device(device.device_id)
    assert row is not None and row.capabilities == ["screen", "mouse"]


async def test_a_handshake_past_the_admission_queue_gets_503_with_retry_after(
    fleet: LiveFleet,
) -> None:
    (device,) = await fleet.enroll(1)
    admission: Admission = fleet.services.admission
    headers = {"Authorization": f"Bearer {device.credential}"}
    # hold every slot and fill the queue: the server is busy admitting others
    held = [await admission.enter() for _ in range(admission.limit)]
    waiters = [asyncio.create_task(_wait_in(admission)) for _ in range(admission.queue)]
    try:
        await eventually(lambda: admission.waiting == admission.queue, timeout=10)
        with pytest.raises(InvalidStatus) as refused:
            await connect(fleet.ws_url, additional_headers=headers, open_timeout=10)
        response = refused.value.response
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert b'"rate_limited"' in response.body
        assert fleet.services.hub.links == 0
    finally:
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        for ticket in held:
            ticket.release()
    async with fleet.agent(device) as agent:  # once it clears, the same device links
        assert agent.device_id == device.device_id
    assert admission.working == 0 and admission.waiting == 0


async def _wait_in(admission: Admission) -> None:
    async with admission.admit():
        await asyncio.Event().wait()


async def test_health_events_come_only_on_meaningful_change(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    # its own heartbeats out of the way: the test sends them
    async with fleet.agent(device, heartbeat_interval_s=3600) as agent:
        with fleet.services.events.subscribe(types=("device.health",)) as events:

            async def beat(**health: Any) -> None:
                await agent.send_raw(encode({"type": "heartbeat", "health": health}))

            # the first heartbeat of a link is published; the same load a bit later is not
            await beat(uptime_seconds=10, cpu_percent=5, memory_percent=40)
            await beat(uptime_seconds=20, cpu_percent=7, memory_percent=41)
            await beat(uptime_seconds=30, cpu_percent=60, memory_percent=41)  # news
            await beat(uptime_seconds=40, cpu_percent=61, memory_percent=41)
            await beat(uptime_seconds=1, cpu_percent=61, memory_percent=41)  # it rebooted
            await beat(uptime_seconds=2, cpu_percent=61, memory_percent=41,
                       device={"state": "down", "reason": "no video"})  # fmt: skip
            seen = [await asyncio.wait_for(events.get(), 10) for _ in range(4)]
    assert [(e or {})["health"]["uptime_seconds"] for e in seen] == [10, 30, 1, 2]
    assert (seen[3] or {})["health"]["device"]["state"] == "down"


async def _nothing_queued(events: EventSubscription) -> bool:
    """Whether no event is waiting in ``events`` (taken at once when one is)."""
    try:
        async with asyncio.timeout(0):
            await events.get()
    except TimeoutError:
        return True
    return False


async def _shown_health(fleet: LiveFleet, device_id: str) -> tuple[Any, Any]:
    """The health the API shows for the device: by its own route, and in the list."""
    one = await fleet.owner.get(f"/v1/devices/{device_id}")
    listed = await fleet.owner.get("/v1/devices")
    assert one.status_code == 200 and listed.status_code == 200
    (row,) = [d for d in listed.json()["devices"] if d["id"] == device_id]
    return one.json()["health"], row["health"]


async def test_live_health_is_shown_while_online_and_stored_on_change(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    news = {"uptime_seconds": 10.0, "cpu_percent": 5.0, "memory_percent": 40.0}
    wobble = {"uptime_seconds": 20.0, "cpu_percent": 7.0, "memory_percent": 41.0}
    async with fleet.agent(device, heartbeat_interval_s=3600) as agent:
        with fleet.services.events.subscribe(types=("device.health",)) as events:
            # the first heartbeat of a link is news: published and stored
            await agent.send_raw(encode({"type": "heartbeat", "health": news}))
            assert (await asyncio.wait_for(events.get(), 10) or {})["health"] == news

            async def stored(health: dict[str, float]) -> bool:
                row = await fleet.device(device.device_id)
                return row is not None and row.health == health

            await eventually(lambda: stored(news), timeout=10)
            row = await fleet.device(device.device_id)
            assert row is not None and row.last_seen is not None
            before = row.last_seen

            # a wobble: shown at once (from the link), not stored, last_seen still refreshed
            await agent.send_raw(encode({"type": "heartbeat", "health": wobble}))

            async def shown(health: dict[str, float]) -> bool:
                return await _shown_health(fleet, device.device_id) == (health, health)

            await eventually(lambda: shown(wobble), timeout=10)

            async def refreshed() -> bool:
                row = await fleet.device(device.device_id)
                return row is not None and row.last_seen is not None and row.last_seen > before

            await eventually(refreshed, timeout=10)
            assert await stored(news)
            assert await _nothing_queued(events)  # nor published
    # going offline stores the last health it reported, which the API shows from then on
    await fleet.wait_status(device.device_id, "offline")
    assert await stored(wobble)
    assert await _shown_health(fleet, device.device_id) == (wobble, wobble)


def test_what_counts_as_meaningful() -> None:
    base = {"uptime_seconds": 100.0, "cpu_percent": 20.0, "memory_percent": 50.0}
    assert health_changed(None, base)
    assert health_changed(base, None)
    assert not health_changed(None, None)
    assert not health_changed(base, {**base, "uptime_seconds": 110.0})
    assert not health_changed(base, {**base, "cpu_percent": 20.0 + HEALTH_STEP_PERCENT - 0.5})
    assert health_changed(base, {**base, "cpu_percent": 20.0 + HEALTH_STEP_PERCENT})
    assert health_changed(base, {**base, "memory_percent": 50.0 - HEALTH_STEP_PERCENT})
    assert health_changed(base, {**base, "uptime_seconds": 5.0})
    assert health_changed(base, {**base, "device": {"state": "ok", "reason": None}})
    ok = {**base, "device": {"state": "ok", "reason": None}}
    assert health_changed(ok, {**ok, "device": {"state": "failing", "reason": "no signal"}})


@pytest.mark.parametrize(
    "health",
    [
        {"uptime_seconds": 10, "cpu_percent": 5.5, "memory_percent": 40},
        {"uptime_seconds": 10.0, "cpu_percent": 0, "memory_percent": 100.0},
        {"uptime_seconds": True, "cpu_percent": 5, "memory_percent": 40},
        {"uptime_seconds": "10", "cpu_percent": 5, "memory_percent": 40},
        {"uptime_seconds": 10, "cpu_percent": 5, "memory_percent": 40, "load": [1, 2]},
        {
            "uptime_seconds": 10,
            "cpu_percent": 5,
            "memory_percent": 40,
            "device": {"state": "down", "reason": "no video"},
        },
        {"uptime_seconds": 10, "cpu_percent": 5, "memory_percent": None},
        {"uptime_seconds": 10, "cpu_percent": 5},
        {"uptime_seconds": "soon", "cpu_percent": 5, "memory_percent": 40},
        "fine",
        None,
    ],
)
def test_heartbeat_health_reads_as_the_model_does(health: Any) -> None:
    message = {"type": "heartbeat", "health": health}
    try:
        expected = Heartbeat.model_validate(message).health.model_dump()
    except pydantic.ValidationError:
        with pytest.raises(pydantic.ValidationError):
            heartbeat_health(message)
    else:
        assert heartbeat_health(message) == expected
        assert list(heartbeat_health(message)) == list(expected)


async def test_links_share_what_their_hellos_have_alike(fleet: LiveFleet) -> None:
    first, second = await fleet.enroll(2)
    hub = fleet.services.hub
    async with fleet.agent(first), fleet.agent(second):
        one, other = hub.get(first.device_id), hub.get(second.device_id)
        assert one is not None and other is not None
        assert one.hello.capabilities == ["screen", "keyboard", "mouse", "clipboard"]
        assert one.hello.capabilities is other.hello.capabilities
        assert one.hello.screens is other.hello.screens
        # the health lives on the link, not in the kept hello; the rest is as the agent said
        assert one.hello.health is None and one.health is not None
        assert one.hello.driver == "sim" and one.hello.agent_version == other.hello.agent_version
        assert other.hello.hardware_id != one.hello.hardware_id
