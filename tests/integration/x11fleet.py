"""A fleet of one: a real server on loopback with an x11 agent on Xvfb linked to it, API tokens
for an operator and a read-only client, and the Tk text window (fixtures ``fleet`` and ``app``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.drivers.x11 import X11Driver
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer
from tests.integration.textapp import TextApp, launch_text_app

__all__ = ["DEVICE", "Fleet", "app_fixture", "fleet_fixture"]

DEVICE = "desk-1"
"""The device's name in the fleet."""


@dataclass
class Fleet:
    server: LiveServer
    operator: str
    read_only: str


async def _token(server: LiveServer, **body: Any) -> str:
    response = await server.http.post("/v1/tokens", json={"name": "mcp", **body})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture(name="fleet")
async def fleet_fixture(
    live_server: LiveServer, desktop: VirtualDesktop, tmp_path: Path
) -> AsyncIterator[Fleet]:
    credential = await load_or_enroll(live_server.url, await live_server.enrollment(DEVICE),
                                      state_dir=tmp_path / "state", hardware="hw-mcp",
                                      device_type="desktop")  # fmt: skip
    driver = X11Driver()
    await driver.start()
    dispatcher = Dispatcher(driver)
    link = AgentLink(credential, dispatcher, driver_name="x11", device_type="desktop",
                     hardware="hw-mcp", backoff_base_s=0.05, backoff_cap_s=0.2)  # fmt: skip
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)
        device = f"/v1/devices/{credential.device_id}"

        async def online() -> bool:
            return bool((await live_server.http.get(device)).json()["status"] == "online")

        await eventually(online, timeout=10)
        operator = await _token(live_server, role="operator")
        read_only = await _token(live_server, read_only=True)
        yield Fleet(live_server, operator, read_only)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()
        await driver.close()


@pytest.fixture(name="app")
def app_fixture(desktop: VirtualDesktop) -> Iterator[TextApp]:
    with launch_text_app(x=60, y=60, animate_ms=600) as running:
        yield running
