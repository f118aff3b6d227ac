"""A pointer action naming a frame taken before the screen's resolution changed is refused by
the agent, on every layer: the native face (HTTP and WebSocket), the server (HTTP and its device
WebSocket), the SDK and the MCP server. The FakeDriver changes its resolution (Xvfb's RandR
and a real Xvfb resized through RandR (a new mode on its output, the screen shrunk to it)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextContent
from Xlib.display import Display

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.agent.runtime import bound_address, serve_http
from remotehands.client import AsyncAgentClient, AsyncFleetClient
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import ValidationError
from remotehands.protocol.results import ScreenshotResult
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))
CHANGED = "resolution changed"


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, FakeDriver]]:
    driver = FakeDriver(800, 600)
    dispatcher = Dispatcher(driver)
    tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
    async with serve_http(create_native_app(dispatcher, tokens), "127.0.0.1:0",
                          websockets=True) as server:  # fmt: skip
        yield f"http://{bound_address(server)}", driver
    await dispatcher.aclose()


@pytest.mark.parametrize("websocket", [False, True])
async def test_the_native_face_refuses_a_frame_from_before_a_resolution_change(
    served: tuple[str, FakeDriver], websocket: bool
) -> None:
    base, driver = served
    async with AsyncAgentClient(base, password=PASSWORD, websocket=websocket) as agent:
        full = await agent.screenshot(scale=0.5)
        region = await agent.screenshot_region(100, 100, 200, 100)
        act = await agent.act([{"type": "mouse.move", "x": 5, "y": 5}], scale=0.5)
        await agent.click(100, 100, frame_id=full.frame_id)
        assert driver.pointer == (200, 200)
        driver.resize(1024, 768)
        before = len(driver.calls)
        for frame_id in (full.frame_id, region.frame_id, act.screenshot.frame_id):
            for call in (agent.click(10, 10, frame_id=frame_id),
                         agent.move(10, 10, frame_id=frame_id),
                         agent.drag(1, 1, 2, 2, frame_id=frame_id, duration_ms=0),
                         agent.scroll(3, 3, delta_y=1, frame_id=frame_id)):  # fmt: skip
                with pytest.raises(ValidationError, match=f"800x600.*1024x768.*{CHANGED}"):
                    await call
        # nothing reached the pointer or the buttons
        assert driver.call_names()[before:] == []
        assert driver.pointer == (200, 200) and not driver.buttons_down
        # a frame taken at the new size works, and so does a click without a frame
        fresh = await agent.screenshot(scale=0.5)
        await agent.click(500, 380, frame_id=fresh.frame_id)
        assert driver.pointer == (1000, 760)
        await agent.click(10, 10)
        assert driver.pointer == (10, 10)


@asynccontextmanager
async def linked(server: LiveServer, tmp: Path, name: str) -> AsyncIterator[FakeDriver]:
    credential = await load_or_enroll(server.url, await server.enrollment(name),
                                      state_dir=tmp / "state", hardware=f"hw-{name}",
                                      device_type="desktop")  # fmt: skip
    driver = FakeDriver(800, 600)
    dispatcher = Dispatcher(driver)
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                     hardware=f"hw-{name}", backoff_base_s=0.05, backoff_cap_s=0.2)  # fmt: skip
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)

        async def online() -> bool:
            found = await server.device(name)
            return found is not None and found["status"] == "online"

        await eventually(online, timeout=10)
        yield driver
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()


async def test_the_server_the_sdk_and_mcp_refuse_it_too(
    live_server: LiveServer, tmp_path: Path
) -> None:
    token = live_server.http.headers["Authorization"][7:]
    async with linked(live_server, tmp_path, "resizing") as driver:
        async with (
            AsyncFleetClient(live_server.url, token=token) as over_http,
            AsyncFleetClient(live_server.url, token=token, websocket=True) as over_ws,
        ):
            http, ws = over_http.device("resizing"), over_ws.device("resizing")
            frames = [(await hands.screenshot(scale=0.5)).frame_id for hands in (http, ws)]
            await ws.click(100, 100, frame_id=frames[1])
            assert driver.pointer == (200, 200)
            driver.resize(1024, 768)
            for hands in (http, ws):
                for frame_id in frames:
                    with pytest.raises(ValidationError, match=CHANGED):
                        await hands.click(10, 10, frame_id=frame_id)
            assert driver.pointer == (200, 200)

            mcp_frame = (await http.screenshot(scale=0.5)).frame_id
        driver.resize(640, 480)
        env = {**os.environ, "REMOTEHANDS_URL": live_server.url, "REMOTEHANDS_TOKEN": token}
        params = StdioServerParameters(command=REMOTEHANDS, args=["mcp"], env=env)
        async with Client(params, read_timeout_seconds=30) as client:
            refused = await client.call_tool(
                "click", {"device": "resizing", "x": 1, "y": 1, "frame_id": mcp_frame}
            )
            assert refused.is_error
            text = " ".join(c.text for c in refused.content if isinstance(c, TextContent))
            assert "1024x768" in text and "640x480" in text and CHANGED in text, text
            shot = await client.call_tool("screenshot", {"device": "resizing"})
            meta = json.loads([c for c in shot.content if isinstance(c, TextContent)][-1].text)
            moved = await client.call_tool("move", {"device": "resizing", "x": 100, "y": 50,
                                                    "frame_id": meta["frame_id"]})  # fmt: skip
            assert not moved.is_error, moved.content
        assert driver.pointer == (100, 50)


def _randr_resize(display: str, width: int, height: int) -> None:
    """Shrink the X screen to ``width`` x ``height`` as a display-settings tool does: a mode of
    that size on the output, the CRTC switched to it, then the screen's size."""
    conn = Display(display)
    try:
        root = conn.screen().root
        resources = root.xrandr_get_screen_resources()
        output, crtc = resources.outputs[0], resources.crtcs[0]
        name = f"{width}x{height}"
        mode = root.xrandr_create_mode(
            {"id": 0, "width": width, "height": height, "dot_clock": 0, "h_sync_start": 0,
             "h_sync_end": 0, "h_total": width, "h_skew": 0, "v_sync_start": 0,
             "v_sync_end": 0, "v_total": height, "name_length": len(name), "flags": 0},
            name,
        ).mode  # fmt: skip
        conn.xrandr_add_output_mode(output, mode)
        stamp = root.xrandr_get_screen_resources().config_timestamp
        conn.xrandr_set_crtc_config(crtc, stamp, 0, 0, mode, 1, [output])  # 1: not rotated
        root.xrandr_set_screen_size(width, height, width * 254 // 960, height * 254 // 960)
        conn.sync()
    finally:
        conn.close()


@pytest.mark.x11
async def test_on_x11_a_frame_from_before_a_randr_resize_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with VirtualDesktop(size=(1280, 800)) as desktop:
        for key, value in desktop.env.items():
            monkeypatch.setenv(key, value)
        driver = X11Driver()
        await driver.start()
        dispatcher = Dispatcher(driver)
        try:
            before = await dispatcher.call("screenshot", {"scale": 0.5})
            assert isinstance(before, ScreenshotResult)
            await dispatcher.call("mouse.click", {"x": 100, "y": 100, "frame_id": before.frame_id})
            assert await driver.cursor_position() == (200, 200)

            await asyncio.to_thread(_randr_resize, str(desktop.display), 1024, 768)

            async def resized() -> bool:
                return [(s.width, s.height) for s in await driver.screens()] == [(1024, 768)]

            await eventually(resized, timeout=10)
            for action in ("mouse.click", "mouse.move"):
                with pytest.raises(ValidationError, match=f"1280x800.*1024x768.*{CHANGED}"):
                    await dispatcher.call(action, {"x": 10, "y": 10, "frame_id": before.frame_id})
            assert await driver.cursor_position() == (200, 200)
            after = await dispatcher.call("screenshot", {"scale": 0.5})
            assert isinstance(after, ScreenshotResult)
            assert (after.native_width, after.native_height) == (1024, 768)
            await dispatcher.call("mouse.click", {"x": 500, "y": 380, "frame_id": after.frame_id})
            assert await driver.cursor_position() == (1000, 760)
        finally:
            await dispatcher.aclose()
            await driver.close()
