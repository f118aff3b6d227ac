"""The agent link at scale's edges, on a live server (SQLite and PostgreSQL): a crowd of links
dropped at once all go offline (written in batches, none left online, nothing timing out), an
older agent's hello still links, a handshake past the admission queue is answered ``503`` with
``Retry-After``, and ``device.health`` is published only when health changed meaningfully."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from remotehands.protocol.link import decode, encode
from remotehands.server.admission import Admission
from remotehands.server.db.models import Device
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
            await beat(uptime_seconds=3, cpu_percent=62, memory_percent=41,
                       device={"state": "down", "reason": "no video"})  # fmt: skip

            async def written() -> bool:  # every heartbeat is written, published or not
                row = await fleet.device(device.device_id)
                return row is not None and (row.health or {}).get("uptime_seconds") == 3

            await eventually(written, timeout=10)
    assert [(e or {})["health"]["uptime_seconds"] for e in seen] == [10, 30, 1, 2]
    assert (seen[3] or {})["health"]["device"]["state"] == "down"


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
