"""The MCP server as an AI agent's client sees it: ``remotehands mcp`` in its own process (stdio,
and streamable HTTP), the official SDK's client, a real fleet server on loopback and an x11
agent on Xvfb driving a real Tk window."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, ImageContent, TextContent
from PIL import Image

from remotehands.testing.xapps import eventually
from tests.integration.textapp import TextApp
from tests.integration.x11fleet import DEVICE, Fleet, app_fixture, fleet_fixture  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.x11, pytest.mark.slow]

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))
INPUT_TOOLS = {"click", "move", "drag", "scroll", "type", "key", "clipboard", "act", "click_text"}
READ_TOOLS = {"devices", "screenshot", "windows", "apps", "find_text", "wait_for_text"}


def _data(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    text = [c for c in result.content if isinstance(c, TextContent)][-1]
    return json.loads(text.text)


def _error(result: CallToolResult) -> str:
    assert result.is_error, result.content
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def _image(result: CallToolResult) -> Image.Image:
    [image] = [c for c in result.content if isinstance(c, ImageContent)]
    assert image.mime_type == "image/jpeg"
    return Image.open(io.BytesIO(base64.b64decode(image.data)))


def _env(fleet: Fleet, token: str) -> dict[str, str]:
    return {**os.environ, "REMOTEHANDS_URL": fleet.server.url, "REMOTEHANDS_TOKEN": token}


async def test_an_agent_looks_acts_and_verifies_over_stdio(fleet: Fleet, app: TextApp) -> None:
    params = StdioServerParameters(command=REMOTEHANDS, args=["mcp"],
                                   env=_env(fleet, fleet.operator))  # fmt: skip
    async with Client(params, read_timeout_seconds=30) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) >= READ_TOOLS | INPUT_TOOLS
        assert "device" in tools["click"].input_schema["properties"]
        assert "frame_id" in (tools["screenshot"].description or "")

        devices = _data(await client.call_tool("devices", {}))["devices"]
        assert [d["name"] for d in devices] == [DEVICE] and devices[0]["status"] == "online"

        # LOOK: an image scaled as asked, with its frame and scale
        shot = await client.call_tool("screenshot", {"device": DEVICE, "max_edge": 640})
        meta = _data(shot)
        assert _image(shot).size == (640, 400)
        assert (meta["scale"], meta["native_width"], meta["native_height"]) == (0.5, 1280, 800)

        # ACT in the screenshot's pixels, then VERIFY by OCR
        ex, ey = app.centre("entry")
        clicked = await client.call_tool(
            "click", {"device": DEVICE, "x": ex // 2, "y": ey // 2, "frame_id": meta["frame_id"]}
        )
        assert _data(clicked) == {"status": "ok"}
        assert _data(await client.call_tool("type", {"device": DEVICE, "text": "mcp was here"}))
        seen = await client.call_tool("wait_for_text", {"device": DEVICE, "text": "mcp was here",
                                                        "timeout_ms": 5000})  # fmt: skip
        assert _data(seen)["present"] is True
        found = _data(await client.call_tool("find_text", {"device": DEVICE,
                                                           "text": "mcp was here"}))  # fmt: skip
        [match] = found["matches"]
        x, y, w, h = app.ready["entry"]
        assert x <= match["x"] <= x + w and y <= match["y"] <= y + h
        assert (match["frame_x"], match["frame_y"]) == (match["x"] // 2, match["y"] // 2)

        # act: press Animate, get the settled screen once the animation stopped
        ax, ay = app.centre("animate")
        acted = await client.call_tool(
            "act", {"device": DEVICE, "steps": [{"type": "click", "x": ax // 2, "y": ay // 2}]}
        )
        result = _data(acted)
        assert app.seen("stopped") is not None and result["settled"]
        assert result["changed"] == [True] and result["changed_regions"]
        assert len(result["frame_regions"]) == len(result["changed_regions"])
        assert _image(acted).size == (1280, 800)  # the default: at most 1280 px, so native

        # a stale or unknown frame is refused, and so is an unknown device
        stale = await client.call_tool("click", {"device": DEVICE, "x": 1, "y": 1,
                                                 "frame_id": 999_999})  # fmt: skip
        assert "frame 999999 is not known" in _error(stale)
        unknown = await client.call_tool("screenshot", {"device": "nope"})
        assert "no device is named 'nope'" in _error(unknown) and DEVICE in _error(unknown)
        missing = await client.call_tool("find_text", {"device": DEVICE, "text": "Zulu forty"})
        assert "not on the screen" in _error(missing) and "closest" in _error(missing)

        # click_text presses the real button: the window goes away
        pressed = _data(await client.call_tool("click_text", {"device": DEVICE, "text": "Apply"}))
        assert pressed["clicked"]["text"] == "Apply"
        await eventually(lambda: app.seen("applied"))
        gone = await client.call_tool("wait_for_text", {"device": DEVICE, "text": "Apply",
                                                        "gone": True})  # fmt: skip
        assert _data(gone)["present"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def http_mcp(fleet: Fleet) -> AsyncIterator[str]:
    """``remotehands mcp --http`` with the read-only token; its URL. Waited for without
    blocking: the fleet server it asks first runs on this event loop."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        REMOTEHANDS, "mcp", "--http", f"127.0.0.1:{port}", env=_env(fleet, fleet.read_only),
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip

    async def listening() -> bool:
        assert proc.returncode is None, "remotehands mcp --http exited"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    try:
        await eventually(listening, timeout=20)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_a_read_only_token_over_streamable_http_sees_no_input_tools(
    fleet: Fleet, http_mcp: str
) -> None:
    async with Client(http_mcp, read_timeout_seconds=30) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names >= READ_TOOLS and not names & INPUT_TOOLS
        shot = await client.call_tool("screenshot", {"device": DEVICE})
        assert _image(shot).size == (1280, 800)
        refused = await client.call_tool("click", {"device": DEVICE, "x": 1, "y": 1})
        assert refused.is_error


async def test_a_bad_token_stops_the_mcp_server_with_the_apis_message(fleet: Fleet) -> None:
    proc = await asyncio.create_subprocess_exec(
        REMOTEHANDS, "mcp", env=_env(fleet, "rh_not-a-token"), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 3 and out == b"", err
    assert b"error:" in err
