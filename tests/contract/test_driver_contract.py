"""One contract every driver passes: the FakeDriver and the x11 driver on a real Xvfb."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from remotehands.drivers.base import Apps, Clipboard, Driver, Keyboard, Mouse, Screen, Windows
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import NotFoundError, ValidationError
from remotehands.protocol.keys import parse_key
from remotehands.protocol.models import Bounds

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["fake", "x11"])
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "fake":
        instance: Driver = FakeDriver(1280, 800)
    else:
        from remotehands.drivers.x11.driver import X11Driver

        desktop = request.getfixturevalue("desktop")
        instance = X11Driver(display=desktop.display)
    async with instance:
        yield instance


async def test_declares_the_desktop_capabilities(driver: Any) -> None:
    assert {"screen", "keyboard", "mouse", "clipboard", "windows", "apps"} <= driver.capabilities
    for protocol in (Screen, Mouse, Keyboard, Clipboard, Windows, Apps):
        assert isinstance(driver, protocol)


async def test_screens_and_grabs(driver: Any) -> None:
    screens = await driver.screens()
    assert screens and screens[0].id == 0
    width, height = screens[0].width, screens[0].height
    frame = await driver.grab(0, None)
    assert frame.shape == (height, width, 4) and frame.dtype == np.uint8
    region = await driver.grab(0, Bounds(x=10, y=20, width=30, height=40))
    assert region.shape == (40, 30, 4)
    with pytest.raises(ValidationError):
        await driver.grab(0, Bounds(x=width - 5, y=0, width=50, height=10))


async def test_pointer_moves_where_told_and_refuses_off_screen(driver: Any) -> None:
    await driver.move(123, 45)
    assert await driver.cursor_position() == (123, 45)
    screen = (await driver.screens())[0]
    with pytest.raises(ValidationError):
        await driver.move(screen.width + 10, 5)
    with pytest.raises(ValidationError):
        await driver.move(-1, 5)
    assert await driver.cursor_position() == (123, 45)
    await driver.button("left", True)
    await driver.button("left", False)
    await driver.click("middle", 1)
    await driver.scroll(0, 2)


async def test_held_keys_are_released_by_release_all(driver: Any) -> None:
    await driver.key(parse_key("shift"), True)
    await driver.button("right", True)
    await driver.release_all()
    await driver.release_all()  # twice is harmless


async def test_clipboard_round_trip(driver: Any) -> None:
    for text in ("plain", "héllo ✓ Привет 日本", ""):
        await driver.set_text(text)
        assert await driver.get_text() == text


async def test_windows_refuse_unknown_ids(driver: Any) -> None:
    windows = await driver.list_windows()
    assert all(w.bounds.width > 0 for w in windows)
    assert sum(w.is_focused for w in windows) <= 1
    for call in (driver.focus_window, driver.close_window):
        with pytest.raises(NotFoundError):
            await call(0x7FFFFFF)
    with pytest.raises(NotFoundError):
        await driver.move_window(0x7FFFFFF, Bounds(x=0, y=0, width=10, height=10))


async def test_apps_open_and_running(driver: Any) -> None:
    with pytest.raises(NotFoundError):
        await driver.open_app("/nonexistent/program", [])
    pid = await driver.open_app("sleep", ["30"])
    try:
        assert pid in await driver.running("sleep")
        assert await driver.running("no-such-program-xyz") == []
    finally:
        if driver.kind != "fake":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
