"""Two replicas, one fleet: a device linked to one replica is driven through the other."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import AuthError
from remotehands.server.cluster import router as cluster_router_module
from remotehands.server.cluster.wire import pack
from tests.cluster.conftest import Pair, cluster_router, until

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


async def test_an_answer_too_large_for_nats_comes_back_as_an_error_saying_so(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = FakeDriver(320, 200)
    agent = await pair.agent(pair.a, "desk-a", driver)
    # A's NATS server as one with a small max_payload (the test server's is 8 MB)
    monkeypatch.setattr(cluster_router(pair.a)._nats.client, "_max_payload", 100_000)
    driver.clipboard = "x" * 500_000
    base = f"/v1/devices/{agent.device_id}"
    local = await pair.a.http.get(base + "/clipboard")
    assert local.status_code == 200 and len(local.json()["text"]) == 500_000
    remote = await pair.b.http.get(base + "/clipboard")
    assert remote.status_code >= 500 and remote.json()["error"] == "device_error", remote.text
    assert "max_payload" in remote.json()["details"]
    driver.clipboard = "small"
    again = await pair.b.http.get(base + "/clipboard")  # the device is still served through B
    assert again.status_code == 200 and again.json()["text"] == "small", again.text


async def test_an_answer_the_holder_cannot_pack_comes_back_as_an_error_not_a_timeout(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await pair.agent(pair.a, "desk-a")

    def picky(message: dict[str, Any]) -> bytes:
        if "result" in message:
            raise TypeError("cannot pack this result")
        return pack(message)

    monkeypatch.setattr(cluster_router_module, "pack", picky)
    started = time.monotonic()
    moved = await pair.b.http.post(
        f"/v1/devices/{agent.device_id}/mouse/move", json={"x": 1, "y": 1}
    )
    assert moved.status_code >= 500 and moved.json()["error"] == "device_error", moved.text
    assert "cannot pack this result" in moved.json()["details"]
    assert time.monotonic() - started < 5  # answered, not timed out


@pytest.mark.x11
async def test_a_real_x11_agent_on_a_typed_and_seen_through_b(
    pair: Pair, desktop: VirtualDesktop
) -> None:
    app = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("entryapp.py"))],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    driver = X11Driver()
    await driver.start()
    try:
        out = app.stdout
        assert out is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")),
                                  daemon=True)  # fmt: skip
        reader.start()
        await until(lambda: any('"text": ""' in line for line in lines), 15)
        agent = await pair.agent(pair.a, "x11-desk", driver, driver_name="x11")
        base = f"/v1/devices/{agent.device_id}"
        typed = await pair.b.http.post(base + "/keyboard/type", json={"text": "via b"})
        assert typed.status_code == 200, typed.text
        await until(lambda: any('"text": "via b"' in line for line in lines), 10)
        via_a = (await pair.a.http.get(base + "/screenshot", params={"format": "png"})).json()
        via_b = (await pair.b.http.get(base + "/screenshot", params={"format": "png"})).json()
        assert (via_b["width"], via_b["height"]) == (1280, 800)
        assert base64.b64decode(via_b["image"]) == base64.b64decode(via_a["image"])
    finally:
        app.terminate()
        app.wait(timeout=10)
        await driver.close()


async def test_a_bulk_action_through_a_over_devices_on_both_replicas(pair: Pair) -> None:
    here = await pair.agent(pair.a, "bulk-a")
    there = await pair.agent(pair.b, "bulk-b")
    answer = await pair.a.http.post("/v1/bulk", json={
        "action": "mouse.move", "params": {"x": 9, "y": 9},
        "selector": {"ids": [here.device_id, there.device_id]},
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["ok"] for r in results] == [True, True], results
    assert here.driver.pointer == there.driver.pointer == (9, 9)
    metrics = await pair.a.http.get("/metrics")
    assert 'remotehands_agent_links{replica="a"} 1.0' in metrics.text
    assert 'action="mouse.move",replica="a",result="ok"' in metrics.text
    health = (await pair.b.http.get("/health")).json()
    assert health["replica"] == "b" and health["nats"] == "ok"


async def test_a_device_deleted_through_a_loses_its_link_on_b(pair: Pair) -> None:
    agent = await pair.agent(pair.b, "doomed")
    deleted = await pair.a.http.delete(f"/v1/devices/{agent.device_id}")
    assert deleted.status_code == 204
    await until(lambda: pair.b.services.hub.get(agent.device_id) is None)
    with pytest.raises(AuthError):
        await asyncio.wait_for(agent.task, 15)
