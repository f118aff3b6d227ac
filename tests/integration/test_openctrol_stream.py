"""``/ws/desktop`` as a consumer of the agent's frame stream: no capture while nobody watches,
a viewer that does not read drops frames while another keeps the source's rate, and a viewer's
input makes the source capture at once (on a real X desktop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from remotehands.agent.desktop import VirtualDesktop
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.x11 import X11Driver
from remotehands.testing import eventually
from tests.integration.openctrol_harness import PASSWORD, Served, serve_openctrol

pytestmark = pytest.mark.anyio

KEY = {"X-Openctrol-Key": PASSWORD}


async def _url(served: Served) -> str:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        response = await http.post("/api/v1/sessions/desktop", headers=KEY,
                                   json={"HaId": "ha", "TtlSeconds": 600})  # fmt: skip
        url: str = response.json()["websocket_url"]
        return url


def _grabs(driver: FakeDriver) -> int:
    return sum(1 for call in driver.calls if call.name == "grab")


async def test_no_capture_while_nobody_watches() -> None:
    driver = FakeDriver(160, 100)
    async with serve_openctrol(driver, {"allow_ha_ids": ["ha"]}) as served:
        assert served.frames is not None
        source = served.frames.get(0)
        url = await _url(served)
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            await http.get("/api/v1/rd/monitors", headers=KEY)
            await http.get("/api/v1/health")
        assert _grabs(driver) == 0 and not source.capturing
        async with connect(url, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # hello
            assert isinstance(await asyncio.wait_for(ws.recv(), 10), bytes)
            assert source.capturing and _grabs(driver) > 0
        await eventually(lambda: not source.capturing)
        stopped_at = _grabs(driver)
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            health = (await http.get("/api/v1/health")).json()
        assert health["remote_desktop"]["is_running"] is False
        assert _grabs(driver) == stopped_at


@contextlib.asynccontextmanager
async def _changing(driver: FakeDriver) -> AsyncIterator[None]:
    """Noise on the whole screen, new every 10 ms: every frame changed and large."""
    rng = np.random.default_rng(8)

    async def paint() -> None:
        while True:
            driver.framebuffer[..., :3] = rng.integers(0, 256, driver.framebuffer[..., :3].shape,
                                                       dtype=np.uint8)  # fmt: skip
            await asyncio.sleep(0.01)

    task = asyncio.create_task(paint())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stalled(url: str) -> ClientConnection:
    """A viewer that reads nothing: a tiny receive buffer, and a client that stops taking
    messages off the socket after the first."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await connect(url, sock=sock, open_timeout=10, max_queue=1, compression=None)


async def test_a_slow_viewer_drops_frames_and_a_fast_one_keeps_its_rate() -> None:
    driver = FakeDriver(480, 300)
    async with serve_openctrol(driver, {"allow_ha_ids": ["ha"]}) as served, _changing(driver):
        assert served.frames is not None
        source = served.frames.get(0)
        slow = await _stalled(await _url(served))
        fast = await connect(await _url(served), open_timeout=10, compression=None)
        try:
            assert json.loads(await asyncio.wait_for(fast.recv(), 10))["type"] == "hello"
            await eventually(lambda: len(served.face.viewers) == 2)
            first = source.frames
            received = 0
            while received < 40:
                if isinstance(await asyncio.wait_for(fast.recv(), 10), bytes):
                    received += 1
            produced = source.frames - first
            by_sent = sorted(served.face.viewers, key=lambda v: v.sent)
            stalled, reader = by_sent
            # the reader got (nearly) every frame the source made meanwhile ...
            assert received >= 0.8 * produced, (received, produced)
            # ... while the stalled viewer fell behind and lost frames, not the others' time
            await eventually(lambda: stalled.dropped > 0)
            assert stalled.sent < reader.sent
            assert reader.dropped <= 0.2 * reader.sent
        finally:
            await fast.close()
            slow.transport.abort()


@pytest.mark.x11
async def test_input_from_a_viewer_is_captured_without_waiting_for_a_tick(
    desktop: VirtualDesktop,
) -> None:
    async with serve_openctrol(X11Driver(), {"allow_ha_ids": ["ha"]}) as served:
        assert served.frames is not None
        source = served.frames.get(0)
        # No viewer: input is carried out and nothing is captured for it.
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            token = (await http.post("/auth/login", json={"password": PASSWORD})).json()["token"]
            moved = await http.post("/mouse/move", json={"x": 5, "y": 5},
                                    headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert moved.status_code == 200, moved.text
        assert source.captures == 0 and not source.capturing
        async with connect(await _url(served), open_timeout=10, compression=None) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            assert isinstance(await asyncio.wait_for(ws.recv(), 10), bytes)
            # Pointer moves from the viewer: each one makes the source look at once. (A tick
            # that happens to come first may show a move itself; a few moves make sure.)
            for x in range(100, 1000, 100):
                message = {"type": "pointer_move", "absolute": True, "x": x * 50, "y": 20_000}
                await ws.send(json.dumps(message))
                with contextlib.suppress(TimeoutError):
                    await eventually(lambda: source.kicked_captures > 0, timeout=1)
                if source.kicked_captures:
                    break
            assert source.kicked_captures > 0
            assert source.captures > source.kicked_captures  # ticks go on beside
