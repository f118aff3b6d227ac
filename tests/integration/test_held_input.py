"""Held input never outlives whoever held it: the agent lets go of what it holds for the server
when the link ends, on the FakeDriver against a real server on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.drivers.base import Held
from remotehands.drivers.fake import FakeDriver
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio


async def test_keys_and_buttons_held_for_the_server_are_released_when_the_link_ends(
    live_server: LiveServer, tmp_path: Path
) -> None:
    credential = await load_or_enroll(live_server.url, await live_server.enrollment(),
                                      state_dir=tmp_path, hardware="hw-held",
                                      device_type="desktop")  # fmt: skip
    driver = FakeDriver(320, 200)
    dispatcher = Dispatcher(driver)
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                     hardware="hw-held", backoff_base_s=0.05, backoff_cap_s=0.2)  # fmt: skip
    base = f"/v1/devices/{credential.device_id}"
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)

        async def linked() -> bool:
            return bool((await live_server.http.get(base)).json()["status"] == "online")

        await eventually(linked, timeout=10)
        assert (
            await live_server.http.post(base + "/keyboard/down", json={"key": "shift"})
        ).is_success
        assert (await live_server.http.post(base + "/mouse/down", json={})).is_success
        assert await driver.held() == Held(keys=frozenset({"ShiftLeft"}),
                                           buttons=frozenset({"left"}))  # fmt: skip
        first = link.connections
        await live_server.app.state.services.hub.disconnect(credential.device_id, 1012, "gone")

        async def released() -> bool:
            return not await driver.held()

        await eventually(released, timeout=10)
        await eventually(lambda: link.connections > first, timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()
