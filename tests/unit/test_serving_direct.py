"""The WebSocket protocol's direct frames (``remotehands.serving.DIRECT_FRAMES``): an app may
take each message as it is read instead of through ``receive``, and write one at once without
``send``. Real uvicorn on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from remotehands.serving import DIRECT_FRAMES, serve_http
from remotehands.testing.xapps import eventually

pytestmark = pytest.mark.anyio


class DirectApp:
    """Reads the first message through ``receive``, then takes the rest directly."""

    def __init__(self) -> None:
        self.first: Any = None
        self.frames: list[str | bytes] = []
        self.end: dict[str, Any] | None = None
        self.offered = False
        self.written_now: list[bool] = []
        self.after_end: BaseException | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.first = await receive()
        deliver = scope["extensions"].get(DIRECT_FRAMES, {}).get("deliver")
        self.offered = deliver is not None
        if deliver is None:
            return
        deliver(self.frames.append)
        send_now = scope["extensions"][DIRECT_FRAMES]["send"]
        self.written_now = [send_now("direct"), send_now(b"\x01now")]
        self.end = await receive()  # only the end comes this way now
        deliver(None)
        try:
            send_now("too late")
        except ConnectionError as err:
            self.after_end = err


async def test_messages_come_in_order_before_and_after_the_switch() -> None:
    app = DirectApp()
    async with serve_http(app, "127.0.0.1:0", websockets=True) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/any", compression=None) as ws:
            # a burst: some are read before the app switches (queued, then handed over first),
            # the rest after
            for index in range(50):
                await ws.send(str(index))
            assert await ws.recv() == "direct"
            assert await ws.recv() == b"\x01now"
            await ws.send(b"\x00\xffbinary")
            await ws.send("last")
            await eventually(lambda: len(app.frames) == 51)
        await eventually(lambda: app.end is not None)
    assert app.offered
    assert app.first == {"type": "websocket.receive", "text": "0"}
    assert app.frames == [*(str(i) for i in range(1, 50)), b"\x00\xffbinary", "last"]
    assert app.end is not None and app.end["type"] == "websocket.disconnect"
    assert app.written_now == [True, True]
    assert isinstance(app.after_end, ConnectionError)


async def test_a_message_that_is_not_utf8_text_closes_the_socket() -> None:
    app = DirectApp()
    async with serve_http(app, "127.0.0.1:0", websockets=True) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/any", compression=None) as ws:
            await ws.send("first")
            assert await ws.recv() == "direct"
            # a text frame whose payload is not UTF-8, written by hand
            ws.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe"))
            ws.send_data()
            await ws.wait_closed()
        assert ws.close_code == 1007
        await eventually(lambda: app.end is not None)
    assert app.frames == []
