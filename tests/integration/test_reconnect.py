"""Fast, gentle recovery: an agent comes back when a stopping server says, and soon after losing
a server that had welcomed it; against a real server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.protocol.link import restart_reason, retry_after
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio


def test_a_restart_reason_says_when_to_come_back() -> None:
    assert retry_after(restart_reason(1.234)) == 1.234
    assert retry_after("server shutting down") is None
    assert retry_after(None) is None


@asynccontextmanager
async def _linked(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[AgentLink]:
    credential = await load_or_enroll(live_server.url, await live_server.enrollment(),
                                      state_dir=tmp_path, hardware="hw-back",
                                      device_type="desktop")  # fmt: skip
    dispatcher = Dispatcher(FakeDriver(64, 64))
    # a backoff that would wait up to 100 s: only the quick retry brings it back in time
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                     hardware="hw-back", backoff_base_s=100, backoff_cap_s=100)  # fmt: skip
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)
        yield link
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()


async def test_an_agent_that_lost_a_healthy_server_comes_back_soon(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with _linked(live_server, tmp_path) as link:
        hub = live_server.app.state.services.hub
        await hub.disconnect(link.credential.device_id, 1011, "crashed")
        await eventually(lambda: link.connections >= 2, timeout=8)


async def test_an_agent_comes_back_when_the_server_said(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with _linked(live_server, tmp_path) as link:
        hub = live_server.app.state.services.hub
        closed = time.monotonic()
        await hub.disconnect(link.credential.device_id, 1001, restart_reason(1.0))
        await eventually(lambda: link.connections >= 2, timeout=8)
        assert time.monotonic() - closed >= 0.9
