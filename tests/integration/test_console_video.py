"""The console's video through the real server, a real x11 agent on Xvfb and the screen
WebSocket on loopback: H.264 (decoded by PyAV) and JPEG rectangles (decoded by simplejpeg,
pasted at their x, y) rebuild the X screen; key frames come first, to a viewer that joins a
shared stream, and on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import av
import mss
import numpy as np
import numpy.typing as npt
import pytest
import simplejpeg
from websockets.asyncio.client import ClientConnection, connect

from remotehands.server.http.screen_stream import FRAME_HEADER
from remotehands.server.services import Services
from remotehands.testing.xapps import ColorWindow, launch_color_window
from tests.integration.x11fleet import Fleet, fleet_fixture

__all__ = ["fleet_fixture"]

pytestmark = [pytest.mark.anyio, pytest.mark.x11]

Pixels = npt.NDArray[np.uint8]


@dataclass
class Message:
    kind: int
    key: bool
    x: int
    y: int
    width: int
    height: int
    seq: int
    data: bytes


def parse(raw: bytes) -> Message:
    kind, flags, x, y, width, height, seq = FRAME_HEADER.unpack_from(raw)
    return Message(kind, bool(flags & 1), x, y, width, height, seq, raw[FRAME_HEADER.size :])


def x_screen() -> Pixels:
    """The X screen itself, RGB."""
    with mss.MSS() as grabber:
        shot = grabber.grab(grabber.monitors[1])
    return np.asarray(shot)[:, :, 2::-1].copy()


def matches(shown: Pixels, screen: Pixels) -> bool:
    """Whether ``shown`` is ``screen`` up to lossy coding: close on average, and hardly a
    pixel far off (a window of another colour is thousands)."""
    if shown.shape != screen.shape:
        return False
    off = np.abs(shown.astype(np.int16) - screen.astype(np.int16))
    return float(off.mean()) < 3.0 and int((off.max(axis=2) > 48).sum()) < 3000


async def device_id(fleet: Fleet) -> str:
    found = await fleet.server.device("desk-1")
    assert found is not None
    return str(found["id"])


@pytest.fixture
async def screen_ws(fleet: Fleet) -> AsyncIterator[str]:
    """The screen WebSocket's URL without its query."""
    base = fleet.server.url.replace("http://", "ws://")
    yield f"{base}/v1/devices/{await device_id(fleet)}/screen/ws?token={fleet.operator}"


@pytest.fixture
def window() -> Iterator[ColorWindow]:
    with launch_color_window("video-probe", "#2060c0", x=200, y=150, width=240, height=160) as w:
        yield w


def repaint(window: ColorWindow, color: str) -> None:
    """Paint the window ``color`` and wait until it has."""
    since = window.mark()
    window.set_color(color)
    window.wait_for(lambda e: e.get("event") == "painted" and e.get("color") == color,
                    since=since)  # fmt: skip


async def receive(ws: ClientConnection, timeout: float = 10) -> Message:
    async with asyncio.timeout(timeout):
        raw = await ws.recv()
    assert isinstance(raw, bytes)
    return parse(raw)


class H264View:
    """Decodes the access units of one socket with PyAV, as a browser's VideoDecoder would."""

    def __init__(self) -> None:
        self.decoder = av.CodecContext.create("h264", "r")
        self.decoder.thread_count = 1  # frame threads would hold pictures back a few frames
        self.picture: Pixels | None = None

    def feed(self, message: Message) -> None:
        assert message.kind == 2
        for frame in self.decoder.decode(av.Packet(message.data)):
            self.picture = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)


async def until_matches(
    ws: ClientConnection,
    apply: Callable[[Message], None],
    picture: Callable[[], Pixels | None],
    timeout: float = 15,
) -> list[Message]:
    """Feed messages to ``apply`` until ``picture()`` matches the X screen (it may already);
    answers the messages fed."""
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        while True:
            shown = picture()
            if shown is not None and matches(shown, x_screen()):
                return got
            message = await receive(ws)
            got.append(message)
            apply(message)


async def test_h264_rebuilds_the_x_screen_from_a_key_frame_and_small_deltas(
    screen_ws: str, window: ColorWindow
) -> None:
    view = H264View()
    async with connect(screen_ws + "&codec=h264", max_size=None, compression=None) as ws:
        first = await receive(ws)
        assert (first.kind, first.key) == (2, True)
        assert (first.width, first.height) == x_screen().shape[1::-1]
        view.feed(first)
        await until_matches(ws, view.feed, lambda: view.picture)
        # A change comes as delta frames, far smaller than the key frame.
        repaint(window, "#c03020")
        deltas = await until_matches(ws, view.feed, lambda: view.picture)
        assert deltas and not any(m.key for m in deltas)
        assert max(len(m.data) for m in deltas) < len(first.data)
        assert view.picture is not None
        assert tuple(view.picture[150 + 80, 200 + 120]) == pytest.approx((192, 48, 32), abs=12)

        # Asked for one, the agent sends a key frame though nothing changed.
        await ws.send("keyframe")
        async with asyncio.timeout(10):
            while not (message := await receive(ws)).key:
                pass
        view.feed(message)
        assert view.picture is not None and matches(view.picture, x_screen())


async def test_jpeg_rectangles_carry_only_the_change_at_its_place(
    screen_ws: str, window: ColorWindow
) -> None:
    canvas: list[Pixels] = []

    def paste(message: Message) -> None:
        image = simplejpeg.decode_jpeg(message.data, colorspace="RGB")
        if message.kind == 0:
            assert message.key and (message.x, message.y) == (0, 0)
            canvas[:] = [image.copy()]
            return
        assert message.kind == 1 and not message.key and canvas
        h, w = image.shape[:2]
        canvas[0][message.y : message.y + h, message.x : message.x + w] = image

    async with connect(screen_ws + "&codec=jpeg-rect", max_size=None, compression=None) as ws:
        first = await receive(ws)
        assert first.kind == 0 and first.key
        paste(first)
        await until_matches(ws, paste, lambda: canvas[0] if canvas else None)
        repaint(window, "#20a040")
        rects = await until_matches(ws, paste, lambda: canvas[0])
        # The window's change, not the screen: a rectangle inside the window's area.
        left, top, width, height = window.client_area()
        rect = next(m for m in rects if m.kind == 1)
        rect_h, rect_w = simplejpeg.decode_jpeg_header(rect.data)[:2]
        assert left - 2 <= rect.x and rect.x + rect_w <= left + width + 2
        assert top - 2 <= rect.y and rect.y + rect_h <= top + height + 2
        assert len(rect.data) < len(first.data) / 4


async def test_a_viewer_joining_a_shared_h264_stream_starts_at_a_key_frame(
    fleet: Fleet, screen_ws: str, window: ColorWindow
) -> None:
    services: Services = fleet.server.app.state.services
    link = services.hub.get(await device_id(fleet))
    assert link is not None
    async with connect(screen_ws + "&codec=h264", max_size=None, compression=None) as first:
        assert (await receive(first)).key
        window.animate(["#ff0000", "#00ff00", "#0000ff"], interval_ms=60)
        async with asyncio.timeout(10):
            while (await receive(first)).key:
                pass  # deltas flow on the stream now
        async with connect(screen_ws + "&codec=h264", max_size=None, compression=None) as second:
            joined = await receive(second)
            assert joined.key  # not a delta it could not decode
            view = H264View()
            view.feed(joined)
            assert view.picture is not None
            # Both viewers share one stream from the agent.
            assert len(link.watches.streams) == 1
        window.still()
