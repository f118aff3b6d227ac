"""Frames follow input: a kick makes a watching frame source capture at once instead of at its
next tick, on a FakeDriver. Each source here ticks every 10 s (rate 0.1), and every wait is far
shorter, so a capture seen during the test came from a kick, not from a tick; the assertions are
on capture counts and order, never on how long anything took. Frames are taken from the streams'
queues, as they arrive (a stream paces its reader to its rate: one frame every 7.5 s here)."""

from __future__ import annotations

import asyncio

import pytest
import simplejpeg

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.framesource import (
    KICK_DELAYS_S,
    FrameSource,
    FrameSources,
    FrameStream,
)
from remotehands.drivers.base import Button, FrameArray
from remotehands.drivers.fake import FakeDriver
from remotehands.protocol.models import Bounds
from remotehands.protocol.streams import Frame
from remotehands.testing.xapps import eventually

pytestmark = pytest.mark.anyio

SLOW = 0.1
"""Ticks a second: the next tick is 10 s away, far beyond every wait of these tests."""
WAIT_S = 5.0


class DrawingDriver(FakeDriver):
    """A FakeDriver whose click paints a square, seen only from the ``draw_after``-th grab after
    the click on (an application that takes a while to redraw)."""

    draw_after = 1

    def __init__(self) -> None:
        super().__init__(64, 48)
        self._pending: tuple[int, tuple[int, int, int]] | None = None
        self.clicks = 0

    async def click(self, button: Button = "left", count: int = 1) -> None:
        # not FakeDriver's click: it paints the pointer's spot at once
        self.clicks += 1
        self._pending = (self.draw_after, (0, 0, 40 * self.clicks % 256))

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        if self._pending is not None:
            left, colour = self._pending
            if left <= 1:
                self.fill(colour, Bounds(x=8, y=8, width=16, height=16))
                self._pending = None
            else:
                self._pending = (left - 1, colour)
        return await super().grab(screen_id, region)

    def grabs(self) -> int:
        return self.call_names().count("grab")


async def _next(frames: FrameStream) -> Frame:
    """The next frame from the stream's queue (not paced to the stream's slow rate)."""
    return await asyncio.wait_for(frames.queue.get(), WAIT_S)


def _red_at(frame: Frame, x: int, y: int) -> int:
    pixels = simplejpeg.decode_jpeg(frame.data, colorspace="RGB")
    return int(pixels[y, x, 0])


async def test_a_kick_makes_a_watching_source_capture_without_waiting_for_its_tick() -> None:
    driver = FakeDriver(64, 48)
    source = FrameSource(driver, rate=SLOW, linger_s=0.05)
    async with source.subscribe() as frames:
        first = await _next(frames)
        assert source.captures == 1 and source.kicked_captures == 0
        driver.fill((0, 0, 255))  # the input's effect, already drawn
        assert source.kick()
        second = await _next(frames)
        # One capture more, made for the kick, and it showed the change: no look again.
        assert (source.captures, source.kicked_captures) == (2, 1)
        assert second.seq == first.seq + 1 and _red_at(second, 30, 30) >= 240
        assert not source.kick_pending


async def test_an_unchanged_screen_is_looked_at_again_then_left_to_the_ticks() -> None:
    driver = FakeDriver(64, 48)
    source = FrameSource(driver, rate=SLOW, linger_s=0.05)
    async with source.subscribe() as frames:
        await _next(frames)
        assert source.kick()
        await eventually(lambda: not source.kick_pending, timeout=WAIT_S)
        # One capture for each delay, none of them a frame; then the kick is over.
        assert source.kicked_captures == len(KICK_DELAYS_S)
        assert source.captures == 1 + len(KICK_DELAYS_S) and source.frames == 1
        # A kick while the screen changes: the first look shows it and is the last.
        driver.fill((0, 255, 0))
        assert source.kick()
        await _next(frames)
        assert source.kicked_captures == len(KICK_DELAYS_S) + 1 and not source.kick_pending


async def test_nothing_is_captured_for_a_kick_while_nobody_watches() -> None:
    driver = FakeDriver(64, 48)
    sources = FrameSources(driver, rate=SLOW, linger_s=0.05)
    source = sources.get(0)
    assert sources.kick() == 0 and not source.kick() and not source.capturing
    async with source.subscribe() as frames:
        await _next(frames)
        assert sources.kick() == 1
        await eventually(lambda: not source.kick_pending, timeout=WAIT_S)
    # Gone: not even while the source lingers before it stops.
    assert sources.kick() == 0 and not source.kick_pending
    await eventually(lambda: not source.capturing, timeout=WAIT_S)
    grabs = driver.call_names().count("grab")
    assert sources.kick() == 0 and not source.capturing
    assert driver.call_names().count("grab") == grabs
    await sources.aclose()


async def test_input_through_the_dispatcher_shows_before_the_next_tick() -> None:
    driver = DrawingDriver()
    dispatcher = Dispatcher(driver, frames=FrameSources(driver, rate=SLOW, linger_s=0.05))
    sources = dispatcher.frame_sources
    assert sources is not None
    source = sources.get(0)
    try:
        async with source.subscribe() as frames:
            await _next(frames)
            # Reading the screen and the clipboard is not input: nothing is asked for.
            await dispatcher.run("screens")
            await dispatcher.run("clipboard.set", {"text": "x"})
            assert not source.kick_pending and source.captures == 1
            # A click the application draws at once: the next frame shows it.
            await dispatcher.run("mouse.click", {"x": 10, "y": 10})
            shown = await _next(frames)
            assert abs(_red_at(shown, 12, 12) - 40) <= 10
            assert (source.captures, source.kicked_captures) == (2, 1)
            # One that takes two grabs to draw: looked at again, and the second look shows it.
            driver.draw_after = 2
            await dispatcher.run("mouse.click", {"x": 10, "y": 10})
            await _next(frames)
            assert (source.captures, source.kicked_captures) == (4, 3)
            assert source.frames == 3
            # Each step of a sequence is input too.
            driver.draw_after = 1
            await dispatcher.run("sequence", {"steps": [{"type": "mouse.click", "x": 1, "y": 1}]})
            await _next(frames)
            assert (source.captures, source.kicked_captures, source.frames) == (5, 4, 4)
    finally:
        await sources.aclose()
        await dispatcher.aclose()


async def test_a_kick_waits_for_the_grab_before_it_and_frames_stay_in_order() -> None:
    driver = DrawingDriver()
    dispatcher = Dispatcher(driver, frames=FrameSources(driver, rate=SLOW, linger_s=0.05))
    sources = dispatcher.frame_sources
    assert sources is not None
    source = sources.get(0)
    seen: list[int] = []
    try:
        async with source.subscribe(depth=16) as frames:
            seen.append((await _next(frames)).seq)
            for _ in range(5):  # input faster than frames may leave: each still comes, in order
                await dispatcher.run("mouse.click", {"x": 1, "y": 1})
                seen.append((await _next(frames)).seq)
        assert seen == list(range(1, 7))
        assert source.captures - source.kicked_captures == 1  # only the first was a tick
        assert driver.grabs() == source.captures
    finally:
        await sources.aclose()
        await dispatcher.aclose()
