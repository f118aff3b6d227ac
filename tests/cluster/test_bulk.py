"""Bulk actions over devices held by two replicas: one request to the other replica for all of
its devices, every device's result (streamed or not), and a clear error for each device whose
holder is gone or did not answer for it."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from remotehands.agent.link import load_or_enroll
from remotehands.server.cluster.router import ALIVE, BULK_SILENCE_S, KEEPALIVE_S
from remotehands.server.cluster.wire import pack, unpack
from remotehands.testing.xapps import eventually
from tests.cluster.conftest import HEARTBEAT_S, Agent, Pair, Replica, cluster_router, until

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

MOVE = {"action": "mouse.move", "params": {"x": 7, "y": 5}}


@asynccontextmanager
async def bus(pair: Pair) -> AsyncIterator[Client]:
    """A NATS client of the test on the replicas' NATS."""
    client = await nats.connect(pair.settings["nats"])
    try:
        yield client
    finally:
        await client.close()


async def spread(pair: Pair, each: int) -> tuple[list[Agent], list[Agent]]:
    """``each`` agents linked to A and as many to B."""
    on_a = [await pair.agent(pair.a, f"bulk-a{i}") for i in range(each)]
    on_b = [await pair.agent(pair.b, f"bulk-b{i}") for i in range(each)]
    return on_a, on_b


async def audited(replica: Replica, device_ids: set[str]) -> bool:
    response = await replica.http.get("/v1/audit", params={"action": "mouse.move"})
    return {e["device_id"] for e in response.json()["entries"]} >= device_ids


async def test_one_request_carries_every_device_of_the_other_replica(pair: Pair) -> None:
    on_a, on_b = await spread(pair, 3)
    everyone = on_a + on_b
    asked: list[dict[str, Any]] = []
    single: list[str] = []
    async with bus(pair) as client:

        async def bulk_request(msg: Msg) -> None:
            asked.append(unpack(msg.data))

        async def device_request(msg: Msg) -> None:
            single.append(msg.subject)

        await client.subscribe("rh.replica.b.bulk", cb=bulk_request)
        await client.subscribe("rh.dev.*.req", cb=device_request)
        # nats-py writes flush's PING ahead of pending SUBs: the second PONG follows them
        await client.flush()
        await client.flush()
        answer = await pair.a.http.post("/v1/bulk", json={
            **MOVE, "selector": {"ids": [a.device_id for a in everyone]}, "concurrency": 2,
        })  # fmt: skip
        await client.flush()
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert sorted(r["device_id"] for r in results) == sorted(a.device_id for a in everyone)
    assert all(r["ok"] and r["duration_ms"] > 0 for r in results), results
    assert all(a.driver.pointer == (7, 5) for a in everyone)
    # B's three devices went in one request, none one by one
    assert len(asked) == 1 and single == []
    assert sorted(asked[0]["devices"]) == sorted(b.device_id for b in on_b)
    assert asked[0]["action"] == "mouse.move" and asked[0]["concurrency"] == 2
    # the replica that took the request audits and counts every device
    await eventually(functools.partial(audited, pair.a, {a.device_id for a in everyone}))
    metrics = (await pair.a.http.get("/metrics")).text
    assert 'action="mouse.move",replica="a",result="ok"} 6.0' in metrics


async def test_the_streamed_bulk_gives_each_device_of_both_replicas_a_line(pair: Pair) -> None:
    on_a, on_b = await spread(pair, 2)
    everyone = {a.device_id for a in on_a + on_b}
    lines: list[dict[str, Any]] = []
    async with pair.b.http.stream(
        "POST", "/v1/bulk", params={"stream": "true"},
        json={**MOVE, "selector": {"ids": sorted(everyone)}},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        async for line in response.aiter_lines():
            if line:
                lines.append(orjson.loads(line))
    *results, total = lines
    assert {r["device_id"] for r in results} == everyone and len(results) == 4
    assert all(r["ok"] for r in results), results
    assert total["devices"] == 4 and total["total_duration_ms"] > 0
    await eventually(functools.partial(audited, pair.b, everyone))


@asynccontextmanager
async def fake_replica(
    pair: Pair, name: str, devices: list[str], client: Client
) -> AsyncIterator[None]:
    """A replica ``name`` that says it holds ``devices`` (heartbeats on ``rh.replica.alive``)
    until the block ends; until A and B believe it."""

    async def beat() -> None:
        while True:
            await client.publish(ALIVE, pack({"replica": name, "devices": devices}))
            await asyncio.sleep(HEARTBEAT_S / 2)  # a heartbeat, as a replica sends them

    beating = asyncio.create_task(beat())
    try:
        for device in devices:
            await until(lambda d=device: cluster_router(pair.a).owner(d) == name)  # type: ignore[misc]
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def enrolled(pair: Pair, name: str) -> str:
    """A device enrolled through A whose agent never links."""
    credential = await load_or_enroll(
        pair.a.url, await pair.a.enrollment(name), state_dir=pair.tmp_path / name,
        hardware=f"hw-{name}", device_type="desktop",
    )  # fmt: skip
    return credential.device_id


async def test_a_device_whose_holder_is_gone_gets_its_error_and_the_others_their_result(
    pair: Pair,
) -> None:
    on_a, on_b = await spread(pair, 1)
    orphan = await enrolled(pair, "orphan")
    async with bus(pair) as client, fake_replica(pair, "ghost", [orphan], client):
        # the ghost announces the device but answers nothing: it is gone
        answer = await pair.a.http.post("/v1/bulk", json={
            **MOVE, "selector": {"ids": [on_a[0].device_id, on_b[0].device_id, orphan]},
        })  # fmt: skip
    assert answer.status_code == 200, answer.text
    by_id = {r["device_id"]: r for r in answer.json()["results"]}
    assert by_id[on_a[0].device_id]["ok"] and by_id[on_b[0].device_id]["ok"]
    error = by_id[orphan]["error"]
    assert error["error"] == "device_offline" and "ghost" in error["details"], error


async def test_a_holder_that_ends_without_a_device_result_gives_that_device_an_error(
    pair: Pair,
) -> None:
    answered, forgotten = await enrolled(pair, "answered"), await enrolled(pair, "forgotten")
    async with bus(pair) as client:

        async def serve(msg: Msg) -> None:
            # a holder that answers for one device only, and ends
            request = unpack(msg.data)
            await msg.respond(pack({"control": client.new_inbox(), "accepted": 2}))
            result = {"device": answered, "ms": 1.5, "result": {"x": 7, "y": 5}}
            await client.publish(request["inbox"], pack({"type": "results", "results": [result]}))
            await client.publish(request["inbox"], pack({"type": "end"}))

        await client.subscribe("rh.replica.liar.bulk", cb=serve)
        async with fake_replica(pair, "liar", [answered, forgotten], client):
            answer = await pair.a.http.post("/v1/bulk", json={
                **MOVE, "selector": {"ids": [answered, forgotten]},
            })  # fmt: skip
    assert answer.status_code == 200, answer.text
    by_id = {r["device_id"]: r for r in answer.json()["results"]}
    assert by_id[answered]["ok"] and by_id[answered]["result"] == {"x": 7, "y": 5}
    assert by_id[answered]["duration_ms"] == 1.5
    error = by_id[forgotten]["error"]
    assert error["error"] == "device_error" and "liar" in error["details"], error


async def test_a_holder_that_goes_silent_gives_its_devices_a_timeout(pair: Pair) -> None:
    muted = await enrolled(pair, "muted")
    async with bus(pair) as client:

        async def serve(msg: Msg) -> None:
            # takes the bulk action, then never says anything again (a replica hung or cut off)
            await msg.respond(pack({"control": client.new_inbox(), "accepted": 1}))

        await client.subscribe("rh.replica.mute.bulk", cb=serve)
        async with fake_replica(pair, "mute", [muted], client):
            started = time.monotonic()
            answer = await pair.a.http.post("/v1/bulk", json={**MOVE, "selector": {"ids": [muted]}})
            waited = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    error = answer.json()["results"][0]["error"]
    assert error["error"] == "timeout" and "stopped answering" in error["details"], error
    # the silence bound, not the action's timeout
    assert BULK_SILENCE_S <= waited < BULK_SILENCE_S + 2 * KEEPALIVE_S + 3, waited
