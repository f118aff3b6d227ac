"""The agent's side of the link, in-process against a real server on loopback, on the
FakeDriver: enrollment and its stored credential, actions through the server (images as binary
frames), reconnection, and the stop when the device is deleted."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, Credential, load_or_enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import AuthError, ConfigError
from remotehands.protocol.models import Bounds
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio


@pytest.fixture(name="server")
def _server(live_server: LiveServer) -> LiveServer:
    return live_server


async def _enroll(server: LiveServer, state: Path, hardware: str = "hw-1") -> Credential:
    return await load_or_enroll(server.url, await server.enrollment(), state_dir=state,
                                hardware=hardware, device_type="desktop")  # fmt: skip


async def test_enrollment_is_stored_privately_and_used_again(
    server: LiveServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    credential = await _enroll(server, state)
    assert credential.device_id.startswith("dev_")
    assert credential.auth_token.startswith("agt_")
    assert credential.ws_url.endswith("/v1/agent/ws")
    [stored] = list(state.iterdir())
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    again = await load_or_enroll(server.url, None, state_dir=state, hardware="hw-1",
                                 device_type="desktop")  # fmt: skip
    assert again == credential
    with pytest.raises(ConfigError, match="not enrolled"):
        await load_or_enroll(server.url, None, state_dir=state, hardware="other-device",
                             device_type="desktop")  # fmt: skip


async def test_a_used_token_is_refused_and_nothing_is_stored(
    server: LiveServer, tmp_path: Path
) -> None:
    token = await server.enrollment()
    await load_or_enroll(server.url, token, state_dir=tmp_path / "a", hardware="hw-a",
                         device_type="desktop")  # fmt: skip
    with pytest.raises(AuthError):
        await load_or_enroll(server.url, token, state_dir=tmp_path / "b", hardware="hw-b",
                             device_type="desktop")  # fmt: skip
    assert not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="cannot reach"):
        await load_or_enroll("http://127.0.0.1:9", "ekvent_x", state_dir=tmp_path / "c",
                             hardware="hw-c", device_type="desktop")  # fmt: skip


async def test_actions_through_the_server_reach_the_driver_and_the_link_comes_back(
    server: LiveServer, tmp_path: Path
) -> None:
    credential = await _enroll(server, tmp_path / "state")
    driver = FakeDriver(320, 200)
    driver.fill((0, 255, 0))
    driver.add_window("Editor", Bounds(x=0, y=0, width=100, height=80))
    dispatcher = Dispatcher(driver)
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                     hardware="hw-1", backoff_base_s=0.05, backoff_cap_s=0.2)  # fmt: skip
    base = f"/v1/devices/{credential.device_id}"
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)

        async def online() -> bool:
            return bool((await server.http.get(base)).json()["status"] == "online")

        await eventually(online, timeout=10)
        device = (await server.http.get(base)).json()
        assert device["screens"] == [{"id": 0, "width": 320, "height": 200, "x": 0, "y": 0}]
        assert "sequence" in device["capabilities"] and device["device_type"] == "desktop"

        typed = await server.http.post(base + "/keyboard/type", json={"text": "via the link ✓"})
        assert typed.json() == {"status": "ok"} and driver.typed == ["via the link ✓"]
        shot = (await server.http.get(base + "/screenshot", params={"format": "png"})).json()
        assert base64.b64decode(shot["image"])[:8] == b"\x89PNG\r\n\x1a\n"
        assert (shot["width"], shot["height"]) == (320, 200)
        windows = (await server.http.get(base + "/windows")).json()
        assert [w["title"] for w in windows] == ["Editor"]
        missing = await server.http.post(base + "/windows/99/focus")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"

        # the server drops the link (fenced by a newer one would look the same): it comes back
        first = link.connections
        services = server.app.state.services
        await services.hub.disconnect(credential.device_id, 1012, "test restart")
        await eventually(lambda: link.connections > first, timeout=10)
        await eventually(online, timeout=10)
        again = await server.http.post(base + "/mouse/move", json={"x": 5, "y": 6})
        assert again.json() == {"status": "ok"} and driver.pointer == (5, 6)

        # deleting the device refuses its credential: the link stops for good
        assert (await server.http.delete(base)).status_code == 204
        with pytest.raises(AuthError):
            await asyncio.wait_for(task, 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()
