"""Presence across replicas (fencing), and streams (watch, upload, download) between them."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import nats
import pytest
from sqlalchemy import update

from remotehands.agent.transfers import PROBE, probe_pattern
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import DeviceOfflineError, ValidationError
from remotehands.protocol.link import CLOSE_FENCED
from remotehands.protocol.models import Bounds
from remotehands.protocol.streams import KeyframeRequests
from remotehands.server.cluster.router import PRESENCE
from remotehands.server.cluster.wire import pack
from remotehands.server.db.models import Device
from remotehands.testing.xapps import eventually
from tests.cluster.conftest import Pair, cluster_router, until
from tests.natsd import NatsServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_a_device_that_connects_to_b_fences_its_old_link_on_a(pair: Pair) -> None:
    first = await pair.agent(pair.a, "desk")
    driver = FakeDriver(320, 200)
    second = await pair.link(pair.moved(first.credential, pair.b), driver)
    await until(lambda: (first.link.last_close or (0, ""))[0] == CLOSE_FENCED)
    first.task.cancel()  # the old connection's agent is gone for good now
    await asyncio.gather(first.task, return_exceptions=True)
    device_id = second.device_id
    await until(lambda: pair.a.services.hub.get(device_id) is None)
    await until(lambda: cluster_router(pair.a).owner(device_id) == "b")
    assert cluster_router(pair.b).owner(device_id) == "b"
    assert cluster_router(pair.a).fenced >= 1
    moved = await pair.a.http.post(f"/v1/devices/{device_id}/mouse/move", json={"x": 7, "y": 8})
    assert moved.status_code == 200, moved.text
    assert driver.pointer == (7, 8)
    assert await pair.a.status(device_id) == "online"


async def test_a_watch_through_b_of_a_device_on_a(pair: Pair) -> None:
    driver = FakeDriver(320, 200)
    agent = await pair.agent(pair.a, "desk-a", driver)
    router = pair.b.services.router
    async with router.watch(agent.device_id, 0, rate=20, quality=60) as frames:
        first = await asyncio.wait_for(anext(frames), 10)
        driver.fill((255, 0, 0))
        second = await asyncio.wait_for(anext(frames), 10)
    assert first.format == second.format == "jpeg"
    assert (first.width, first.height) == (320, 200)
    assert isinstance(second.data, bytes) and second.data[:2] == b"\xff\xd8"
    assert second.seq > first.seq
    # leaving the block ended the stream on A and on the agent
    link = pair.a.services.hub.get(agent.device_id)
    assert link is not None
    await until(lambda: not link.watches.streams, 10)
    # the holder goes: the watch through B ends with device_offline
    async with router.watch(agent.device_id, 0, rate=5, quality=50) as frames:
        await asyncio.wait_for(anext(frames), 10)
        await pair.a.services.hub.disconnect(agent.device_id, 1001, "test: link dropped")
        agent.task.cancel()
        with pytest.raises(DeviceOfflineError):
            async with asyncio.timeout(15):
                async for _ in frames:
                    pass


async def test_a_delta_watch_through_b_starts_and_restarts_on_key_frames(pair: Pair) -> None:
    driver = FakeDriver(320, 200)
    agent = await pair.agent(pair.a, "desk-rect", driver)
    router = pair.b.services.router
    async with router.watch(agent.device_id, 0, rate=20, quality=60, codec="jpeg-rect") as frames:
        first = await asyncio.wait_for(anext(frames), 10)
        assert first.format == "jpeg-rect" and first.key
        driver.fill((0, 0, 255), Bounds(x=40, y=30, width=20, height=10))
        delta = await asyncio.wait_for(anext(frames), 10)
        assert not delta.key and delta.x <= 40 and delta.y <= 30  # the changed rectangle's corner
        assert isinstance(frames, KeyframeRequests)
        await frames.request_key()  # a viewer whose decoder failed, on the other replica
        again = await asyncio.wait_for(anext(frames), 10)
    assert again.key and (again.width, again.height) == (320, 200)
    assert again.seq > delta.seq


async def _chunks(total: int, piece: int = 300_000) -> AsyncIterator[bytes]:
    block = bytes(range(256)) * (piece // 256 + 1)
    sent = 0
    while sent < total:
        data = block[: min(piece, total - sent)]
        sent += len(data)
        yield data


async def test_an_upload_and_a_download_through_b_of_a_device_on_a(pair: Pair) -> None:
    agent = await pair.agent(pair.a, "desk-a")
    router = pair.b.services.router
    total = 9 << 20
    digest = hashlib.sha256()
    async for data in _chunks(total):
        digest.update(data)
    result = await router.upload(
        agent.device_id, PROBE, _chunks(total), total, name=f"sha256:{digest.hexdigest()}"
    )
    assert result == {"size": total, "sha256": digest.hexdigest()}
    # the target's error crosses as our error
    with pytest.raises(ValidationError, match="SHA-256"):
        await router.upload(agent.device_id, PROBE, _chunks(1000), 1000, name="sha256:" + "0" * 64)

    size = 5 << 20
    name = f"{size}:seed"
    block = probe_pattern(name)
    expected = hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()
    received = hashlib.sha256()
    async with router.download(agent.device_id, PROBE, name) as incoming:
        assert incoming.size == size
        async for data in incoming:
            received.update(data)
    assert received.hexdigest() == expected
    # leaving a download early cancels it on the holder
    async with router.download(agent.device_id, PROBE, f"{64 << 20}:big") as incoming:
        async for _ in incoming:
            break
    link = pair.a.services.hub.get(agent.device_id)
    assert link is not None
    await until(lambda: not link.transfers.active, 15)


async def test_an_old_link_ending_on_a_after_the_device_moved_to_b_leaves_it_online(
    pair: Pair, nats_server: NatsServer
) -> None:
    agent = await pair.agent(pair.b, "mover")
    device_id = agent.device_id
    # what A does when an old link of the device ends there late (it noticed the drop after
    # the agent was already back on B): it writes the device offline, then says so
    async with pair.a.services.db.session() as session:
        await session.execute(update(Device).where(Device.id == device_id).values(status="offline"))
        await session.commit()
    client = await nats.connect(nats_server.url)
    try:
        await client.publish(PRESENCE, pack({"op": "offline", "device": device_id,
                                             "replica": "a", "marked_offline": True}))  # fmt: skip
        await client.flush()
    finally:
        await client.close()
    await eventually(lambda: _status(pair, device_id), 10)
    assert pair.b.services.router.is_online(device_id)


async def _status(pair: Pair, device_id: str) -> bool:
    return await pair.a.status(device_id) == "online"
