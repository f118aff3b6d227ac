"""One contract every driver passes, for the capabilities it declares (see conftest.py): the
FakeDriver, the FakeDriver playing a KVM, and the x11 driver on a real Xvfb."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.drivers.base import CAPABILITY_PROTOCOLS, Held
from remotehands.errors import NotFoundError, ValidationError
from remotehands.protocol.keys import parse_key
from remotehands.protocol.models import Bounds

pytestmark = pytest.mark.anyio


async def test_implements_the_protocols_of_its_capabilities(driver: Any) -> None:
    assert driver.capabilities and driver.capabilities <= set(CAPABILITY_PROTOCOLS)
    for capability in driver.capabilities:
        assert isinstance(driver, CAPABILITY_PROTOCOLS[capability])
    assert isinstance(await driver.hardware_id(), str) and await driver.hardware_id()


@pytest.mark.needs("screen")
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


@pytest.mark.needs("screen", "mouse")
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


@pytest.mark.needs("keyboard", "mouse")
async def test_held_keys_and_buttons_are_released_by_release_all(driver: Any) -> None:
    assert await driver.held() == Held()
    await driver.key(parse_key("shift"), True)
    await driver.key(parse_key("ctrl"), True)
    await driver.button("left", True)
    held = await driver.held()
    assert held.keys == {"ShiftLeft", "ControlLeft"} and held.buttons == {"left"}
    await driver.key(parse_key("ctrl"), False)
    assert (await driver.held()).keys == {"ShiftLeft"}
    await driver.release_all()
    assert await driver.held() == Held()
    await driver.release_all()  # twice is harmless
    assert not await driver.held()


@pytest.mark.needs("keyboard", "mouse")
async def test_the_agent_releases_input_another_process_left_down(
    driver: Any, left_down: Callable[[Any], Awaitable[None]]
) -> None:
    await left_down(driver)  # Shift and the left button, as a killed agent leaves them
    assert await driver.held() == Held(keys=frozenset({"ShiftLeft"}), buttons=frozenset({"left"}))
    released = await Dispatcher(driver).release_input(everything=True)
    assert released.keys >= {"ShiftLeft"} and "left" in released.buttons
    assert await driver.held() == Held()


@pytest.mark.needs("clipboard")
async def test_clipboard_round_trip(driver: Any) -> None:
    for text in ("plain", "héllo ✓ Привет 日本", ""):
        await driver.clipboard_set(text)
        assert await driver.clipboard_get() == text


@pytest.mark.needs("windows")
async def test_windows_refuse_unknown_ids(driver: Any) -> None:
    windows = await driver.windows()
    assert all(w.bounds.width > 0 for w in windows)
    assert sum(w.is_focused for w in windows) <= 1
    for call in (driver.focus_window, driver.close_window):
        with pytest.raises(NotFoundError):
            await call(0x7FFFFFF)
    with pytest.raises(NotFoundError):
        await driver.move_window(0x7FFFFFF, Bounds(x=0, y=0, width=10, height=10))


@pytest.mark.needs("apps")
async def test_apps_open_and_running(driver: Any) -> None:
    with pytest.raises(NotFoundError):
        await driver.open_app("/nonexistent/program", [])
    pid = await driver.open_app("sleep", ["30"])
    try:
        assert pid in await driver.app_running("sleep")
        assert await driver.app_running("no-such-program-xyz") == []
    finally:
        if driver.kind != "fake":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
