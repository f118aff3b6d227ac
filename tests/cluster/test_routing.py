"""Two replicas, one fleet: a device linked to one replica is driven through the other."""

from __future__ import annotations

import base64

import pytest

from remotehands.drivers.fake import FakeDriver
from tests.cluster.conftest import Pair, cluster_router

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_an_action_through_b_reaches_the_agent_linked_to_a(pair: Pair) -> None:
    driver = FakeDriver(320, 200)
    agent = await pair.agent(pair.a, "desk-a", driver)
    base = f"/v1/devices/{agent.device_id}"
    assert cluster_router(pair.b).owner(agent.device_id) == "a"
    typed = await pair.b.http.post(base + "/keyboard/type", json={"text": "through b"})
    assert typed.status_code == 200, typed.text
    assert driver.typed == ["through b"]
    via_a = (await pair.a.http.get(base + "/screenshot", params={"format": "png"})).json()
    via_b = (await pair.b.http.get(base + "/screenshot", params={"format": "png"})).json()
    assert base64.b64decode(via_b["image"]) == base64.b64decode(via_a["image"])
    missing = await pair.b.http.post(base + "/windows/99/focus")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
