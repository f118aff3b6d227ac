"""Bad days of a replica: NATS lost while running, and garbage on the bus."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.aio.msg import Msg

from remotehands.server.cluster.wire import pack, unpack
from tests.cluster.conftest import Pair, cluster_router, until
from tests.natsd import NatsServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_nats_lost_fails_remote_devices_fast_keeps_local_ones_and_comes_back(
    pair: Pair, nats_server: NatsServer
) -> None:
    here = await pair.agent(pair.a, "desk-a")
    there = await pair.agent(pair.b, "desk-b")
    move = {"x": 3, "y": 4}
    # a request in flight through A to B's device when NATS goes fails then, not at its timeout
    long = {"steps": [{"type": "sleep", "ms": 6_000}]}
    in_flight = asyncio.create_task(
        pair.a.http.post(f"/v1/devices/{there.device_id}/sequence", json=long)
    )
    await until(there.link.dispatcher._lock.locked, 10)
    lost_at = time.monotonic()
    nats_server.stop()
    failed = await asyncio.wait_for(in_flight, 15)
    assert failed.status_code == 503 and failed.json()["error"] == "device_offline", failed.text
    assert time.monotonic() - lost_at < 5  # the lost connection, not the request's timeout
    await until(lambda: not cluster_router(pair.a).connected)
    started = time.monotonic()
    remote = await pair.a.http.post(f"/v1/devices/{there.device_id}/mouse/move", json=move)
    assert remote.status_code == 503 and remote.json()["error"] == "device_offline", remote.text
    assert time.monotonic() - started < 1.0
    local = await pair.a.http.post(f"/v1/devices/{here.device_id}/mouse/move", json=move)
    assert local.status_code == 200, local.text
    assert here.driver.pointer == (3, 4)

    nats_server.start()
    await until(lambda: cluster_router(pair.a).connected and cluster_router(pair.b).connected, 15)
    await until(lambda: pair.a.services.router.is_online(there.device_id), 15)
    again = await pair.a.http.post(f"/v1/devices/{there.device_id}/mouse/move", json=move)
    assert again.status_code == 200, again.text
    assert there.driver.pointer == (3, 4)


async def test_garbage_on_the_bus_is_dropped_and_nothing_breaks(
    pair: Pair, nats_server: NatsServer
) -> None:
    agent = await pair.agent(pair.a, "desk-a")
    subjects = [
        "rh.presence", "rh.replica.alive", "rh.replica.sync", "rh.events", "rh.auth.clear",
        "rh.ratelimit", "rh.replica.a.bulk", "rh.replica.b.bulk",
        f"rh.dev.{agent.device_id}.req", f"rh.dev.{agent.device_id}.watch",
        f"rh.dev.{agent.device_id}.upload", f"rh.dev.{agent.device_id}.nonsense",
    ]  # fmt: skip
    payloads = [
        b"", b"\x00\x00\x00\xff{", b"not json", b"[1, 2]", b'{"type": 5}',
        pack({"op": "online", "replica": "x", "device": {"a": 1}, "since": "soon"}),
        pack({"replica": "x", "devices": "all", "event": [1], "limiter": "login", "op": "failed"}),
        pack({"action": 1, "params": "none", "timeout_s": "x"}),
    ]  # fmt: skip
    client = await nats.connect(nats_server.url)
    try:
        # a barrier: after the garbage, ask every replica to announce itself; once both have,
        # their readers are past the garbage (NATS keeps one sender's order)
        announced: set[str] = set()

        async def heard(msg: Msg) -> None:
            announced.add(unpack(msg.data)["replica"])

        await client.subscribe("rh.replica.alive", cb=heard)
        for subject in subjects:
            for payload in payloads:
                await client.publish(subject, payload)
        await client.publish("rh.replica.sync", pack({"replica": "probe"}))
        await client.flush()
        await until(lambda: announced >= {"a", "b"})
    finally:
        await client.close()
    moved = await pair.b.http.post(
        f"/v1/devices/{agent.device_id}/mouse/move", json={"x": 1, "y": 2}
    )
    assert moved.status_code == 200, moved.text
    assert agent.driver.pointer == (1, 2)
    assert cluster_router(pair.b).owner(agent.device_id) == "a"
    assert cluster_router(pair.a).replicas == ["b"] and cluster_router(pair.b).replicas == ["a"]
