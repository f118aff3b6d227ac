"""What was per process is fleet-wide on replicas: events, revocations, rate limits, locks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.cluster.conftest import Pair, Replica, cluster_router, until

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["type"] == kind:
            return event


def _events(replica: Replica) -> str:
    return replica.url.replace("http://", "ws://") + "/v1/events?types=device.online,device.offline"


async def test_b_streams_the_online_and_offline_of_a_device_linked_to_a(pair: Pair) -> None:
    headers = {"Authorization": pair.b.http.headers["Authorization"]}
    async with connect(_events(pair.b), additional_headers=headers) as ws:
        agent = await pair.agent(pair.a, "desk-a")
        online = await _next(ws, "device.online")
        assert online["device_id"] == agent.device_id
        agent.task.cancel()
        await asyncio.gather(agent.task, return_exceptions=True)
        offline = await _next(ws, "device.offline")
        assert offline["device_id"] == agent.device_id
        # each event once: no echo, no second copy. A barrier: another device's online event;
        # NATS keeps A's order, so a copy of the offline would come before it
        later = await pair.agent(pair.a, "desk-later")
        between = []
        while (event := json.loads(await asyncio.wait_for(ws.recv(), 10)))[
            "type"
        ] != "device.online":
            between.append(event)
        assert event["device_id"] == later.device_id
        assert between == []
    assert not pair.b.services.router.is_online(agent.device_id)
    assert await pair.b.status(agent.device_id) == "offline"


async def test_a_token_revoked_on_a_is_refused_on_b_at_once(pair: Pair) -> None:
    created = await pair.a.http.post("/v1/tokens", json={"name": "automation"})
    assert created.status_code == 201, created.text
    token = created.json()
    bearer = {"Authorization": f"Bearer {token['token']}"}
    # B authenticates it and keeps it in its principal cache
    for _ in range(3):
        assert (await pair.b.http.get("/v1/devices", headers=bearer)).status_code == 200
    revoked = await pair.a.http.delete(f"/v1/tokens/{token['id']}")
    assert revoked.status_code == 204
    # A sent the clear before it answered; it reaches B before the next request does
    refused = await pair.b.http.get("/v1/devices", headers=bearer)
    assert refused.status_code == 401, refused.text


async def test_failed_logins_spread_over_both_replicas_hit_one_limit(pair: Pair) -> None:
    limit = pair.a.services.settings.login_rate_limit  # per address and username: 10
    bad = {"username": "owner", "password": "wrong-password"}
    async with (
        httpx.AsyncClient(base_url=pair.a.url) as a,
        httpx.AsyncClient(base_url=pair.b.url) as b,
    ):
        for attempt in range(limit):
            client = a if attempt % 2 == 0 else b
            failed = await client.post("/v1/auth/login", json=bad)
            assert failed.status_code == 401, failed.text
        # both replicas counted all ten (the last one crosses NATS in milliseconds)
        await until(lambda: _limited(pair.a) and _limited(pair.b), 5)
        for client in (a, b):
            limited = await client.post("/v1/auth/login", json=bad)
            assert limited.status_code == 429, limited.text


def _limited(replica: Replica) -> bool:
    try:
        replica.services.login_limiter.check("127.0.0.1", "owner")
    except Exception:
        return True
    return False


async def test_a_sequence_through_a_and_a_click_through_b_share_one_lock(pair: Pair) -> None:
    agent = await pair.agent(pair.a, "desk-a")
    base = f"/v1/devices/{agent.device_id}"
    sequence = asyncio.create_task(pair.a.http.post(base + "/sequence", json={"steps": [
        {"type": "sleep", "ms": 3000}, {"type": "keyboard.type", "text": "seq"}]}))  # fmt: skip
    lock = agent.link.dispatcher._lock
    await until(lock.locked, 5)
    # the lock is the agent's, whichever replica a request comes through: B's cannot have it
    steps = {"steps": [{"type": "keyboard.type", "text": "b"}]}
    busy = await pair.b.http.post(base + "/sequence", params={"lock_timeout_ms": 20}, json=steps)
    assert busy.status_code == 409 and busy.json()["error"] == "busy", busy.text
    # a click through B waits for the sequence through A, then runs
    waited = await pair.b.http.post(base + "/mouse/click", json={})
    assert waited.status_code == 200, waited.text
    assert (await sequence).status_code == 200
    names = agent.driver.call_names()
    assert names.index("type") < names.index("click")
    assert agent.driver.typed == ["seq"]


async def test_b_authorises_a_device_on_a_from_what_a_announced_kept_current(pair: Pair) -> None:
    agent = await pair.agent(pair.a, "tagged")
    base = f"/v1/devices/{agent.device_id}"
    created = await pair.a.http.post("/v1/tokens", json={"name": "lab only", "tags": ["lab"]})
    assert created.status_code == 201, created.text
    lab = {"Authorization": f"Bearer {created.json()['token']}"}
    router = cluster_router(pair.b)
    known = router.known(agent.device_id)
    assert known is not None and known.name == "tagged" and known.tags == []
    refused = await pair.b.http.post(base + "/mouse/move", headers=lab, json={"x": 1, "y": 1})
    assert refused.status_code == 404, refused.text
    # tags changed through A reach B's knowledge of the device: B lets the token in...
    assert (await pair.a.http.patch(base, json={"tags": ["lab"]})).status_code == 200
    await until(lambda: (router.known(agent.device_id) or known).tags == ["lab"])
    allowed = await pair.b.http.post(base + "/mouse/move", headers=lab, json={"x": 2, "y": 2})
    assert allowed.status_code == 200, allowed.text
    # ...and out again
    assert (await pair.a.http.patch(base, json={"tags": ["other"]})).status_code == 200
    await until(lambda: (router.known(agent.device_id) or known).tags == ["other"])
    again = await pair.b.http.post(base + "/mouse/move", headers=lab, json={"x": 3, "y": 3})
    assert again.status_code == 404, again.text
    assert agent.driver.pointer == (2, 2)
