"""The tinypilot driver against the agent's own TinyPilot face, over real loopback HTTP.

On a FakeDriver device: tokens fetched again after the device restarts, static keys, the
device's 500 and 204 as our errors with its words, typing by layout (de-DE's Y/Z and AltGr).
On the session's Xvfb desktop, end to end (tinypilot driver -> TinyPilot face -> x11 driver ->
X): the text typed lands in a real window, screenshots show the screen, moves land on the
pixel and clicks in the window.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.runtime import DevicePlan, make_driver, plan_device
from remotehands.drivers.base import Driver, EncodedScreen, Keyboard, Mouse, Screen
from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.drivers.tinypilot.driver import TinyPilotDriver
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import ConfigError, DeviceError, ValidationError
from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds
from remotehands.serving import bound_address, serve_http
from remotehands.testing.xapps import eventually, launch_color_window, launch_probe
from tests.integration.test_tinypilot_face import DarkDriver

pytestmark = pytest.mark.anyio

PASSWORD = "tiny-driver-password"


def _plan(driver: Driver) -> DevicePlan:
    return plan_device("target", driver, listen="127.0.0.1:0", faces=["native", "tinypilot"],
                       password=PASSWORD, password_file=None, pam=False)  # fmt: skip


@contextlib.asynccontextmanager
async def _device(driver: Driver, listen: str = "127.0.0.1:0") -> AsyncIterator[str]:
    """``driver`` behind a TinyPilot face; answers its URL."""
    plan = _plan(driver)
    async with serve_http(plan.app, listen) as server:
        yield f"http://{bound_address(server)}"


def _tinypilot(url: str, **settings: object) -> TinyPilotDriver:
    driver = make_driver("tinypilot", {"url": url, **settings})
    assert isinstance(driver, TinyPilotDriver)
    return driver


def _keys(driver: FakeDriver) -> list[tuple[str, bool]]:
    return [(str(c.args["key"]), bool(c.args["down"])) for c in driver.calls if c.name == "key"]


async def test_declares_a_kvm_with_screen_keyboard_and_mouse() -> None:
    driver = _tinypilot("http://127.0.0.1:9", layout="de-DE")
    assert driver.kind == "tinypilot" and driver.device_type == "tinypilot"
    assert driver.capabilities == {"screen", "keyboard", "mouse"}
    for protocol in (Screen, EncodedScreen, Keyboard, Mouse):
        assert isinstance(driver, protocol)
    # the device is where its URL points: the layout or a timeout do not make another one
    again = _tinypilot("http://127.0.0.1:9/", timeout_s=3)
    assert await driver.hardware_id() == await again.hardware_id()
    with pytest.raises(ConfigError, match="layout"):
        _tinypilot("http://127.0.0.1:9", layout="fr-FR")
    with pytest.raises(ConfigError, match="url"):
        make_driver("tinypilot", {})


async def test_tokens_are_fetched_again_after_the_device_restarts() -> None:
    fake = FakeDriver(64, 48)
    async with _device(fake) as url:
        tiny = _tinypilot(url)
        await tiny.start()
    try:
        assert tiny.client is not None and tiny.client.token_fetches == 1
        assert [s.model_dump() for s in await tiny.screens()] == [
            {"id": 0, "width": 64, "height": 48, "x": 0, "y": 0}
        ]
        # the device restarts (a new face on the same address): its tokens are gone
        async with _device(fake, url.removeprefix("http://")):
            await tiny.move(10, 20)
            assert fake.pointer == (10, 20) and tiny.client.token_fetches == 2
            await tiny.move(11, 21)  # the new token is kept
            assert tiny.client.token_fetches == 2
    finally:
        await tiny.close()


async def test_a_static_key_is_sent_as_is_and_a_wrong_one_fails_to_start(tmp_path: Path) -> None:
    fake = FakeDriver(64, 48)
    key = tmp_path / "key"
    async with _device(fake) as url:
        key.write_text(PASSWORD + "\n")
        keyed = _tinypilot(url, password_file=str(key))
        async with keyed:
            assert keyed.client is not None and keyed.client.token_fetches == 0
            await keyed.type("ok")
            assert fake.typed == [] and _keys(fake)[-2:] == [("KeyK", True), ("KeyK", False)]
        key.write_text("wrong\n")
        with pytest.raises(DeviceError, match="refused the API key"):
            await _tinypilot(url, password_file=str(key)).start()


async def test_device_failures_become_device_errors_with_its_words() -> None:
    screen_only = FakeDriver(settings=FakeSettings(width=64, height=48,
                                                   capabilities=frozenset({"screen"})))  # fmt: skip
    async with _device(screen_only) as url, _tinypilot(url) as tiny:
        with pytest.raises(DeviceError) as err:
            await tiny.type("a")
        assert "Failed to forward keystroke: " in err.value.details
        assert "no keyboard capability" in err.value.details
    async with _device(DarkDriver(64, 48)) as url:
        dark = _tinypilot(url)
        await dark.start()  # no video signal is no reason not to type
        try:
            with pytest.raises(DeviceError, match=r"^no video signal: "):
                await dark.snapshot()
            with pytest.raises(DeviceError, match="no video signal"):
                await dark.move(1, 1)  # the screen's size is unknown without a picture
        finally:
            await dark.close()
    with pytest.raises(DeviceError, match=r"cannot reach the TinyPilot at http://127\.0\.0\.1:9"):
        await _tinypilot("http://127.0.0.1:9", timeout_s=2).start()


async def test_text_is_typed_for_the_targets_layout() -> None:
    fake = FakeDriver(64, 48)
    async with _device(fake) as url, _tinypilot(url, layout="de-DE") as tiny:
        fake.calls.clear()
        await tiny.type("zY@")
        assert _keys(fake) == [
            ("KeyY", True), ("KeyY", False),
            ("ShiftLeft", True), ("KeyZ", True), ("KeyZ", False), ("ShiftLeft", False),
            ("AltRight", True), ("KeyQ", True), ("KeyQ", False), ("AltRight", False),
        ]  # fmt: skip
        fake.calls.clear()
        with pytest.raises(ValidationError, match=r"These characters are not supported: '£'"):
            await tiny.type("a£")
        assert _keys(fake) == []  # nothing typed when one character cannot be
        # held modifiers ride along the next key; a lone tap is sent as that key
        await tiny.key(Key(code="ControlLeft"), True)
        await tiny.key(Key(code="KeyC"), True)
        await tiny.key(Key(code="KeyC"), False)
        await tiny.key(Key(code="ControlLeft"), False)
        await tiny.key(Key(code="MetaLeft"), True)
        await tiny.key(Key(code="MetaLeft"), False)
        await tiny.key(Key(char="ö"), True)
        assert _keys(fake) == [
            ("ControlLeft", True), ("KeyC", True), ("KeyC", False), ("ControlLeft", False),
            ("MetaLeft", True), ("MetaLeft", False), ("Semicolon", True), ("Semicolon", False),
        ]  # fmt: skip


async def test_mouse_buttons_and_wheel() -> None:
    fake = FakeDriver(101, 51)
    async with _device(fake) as url, _tinypilot(url) as tiny:
        await tiny.move(100, 50)
        assert fake.pointer == (100, 50) and await tiny.cursor_position() == (100, 50)
        with pytest.raises(ValidationError, match="off the screen"):
            await tiny.move(101, 0)
        fake.calls.clear()
        await tiny.click("right")
        await tiny.button("left", True)
        assert (await tiny.held()).buttons == {"left"}
        await tiny.release_all()
        await tiny.scroll(0, -2)
        calls = [(c.name, c.args.get("button"), c.args.get("down"), c.args.get("delta_y"))
                 for c in fake.calls if c.name in ("button", "scroll")]  # fmt: skip
        assert calls == [
            ("button", "right", True, None), ("button", "right", False, None),
            ("button", "left", True, None), ("button", "left", False, None),
            ("scroll", None, None, -1), ("scroll", None, None, -1),
        ]  # fmt: skip
        assert not await tiny.held()


# -- end to end on X --------------------------------------------------------------------------


@pytest.fixture
async def x11_behind_tinypilot(desktop: VirtualDesktop) -> AsyncIterator[tuple[X11Driver, str]]:
    x11 = X11Driver()
    async with x11, _device(x11) as url:
        yield x11, url


@pytest.mark.x11
async def test_end_to_end_typing_screenshots_and_mouse_on_x(
    x11_behind_tinypilot: tuple[X11Driver, str],
) -> None:
    x11, url = x11_behind_tinypilot
    async with _tinypilot(url) as tiny:
        assert [(s.width, s.height) for s in await tiny.screens()] == [(1280, 800)]

        with launch_probe("tinypilot probe", x=200, y=150) as probe:
            await x11.focus_window(probe.window_id)
            await probe.wait_for_async("focus_in")
            await tiny.type("Hello, World! 42 @home_#1")
            await eventually(lambda: probe.text() == "Hello, World! 42 @home_#1", timeout=15)
            # a de-DE layout presses the keys a German keyboard has there: on this US X
            # server Z's key gives y, and Y's gives z
            probe.clear()
            async with _tinypilot(url, layout="de-DE") as german:
                await german.type("zy")
            await eventually(lambda: probe.text() == "yz", timeout=15)

            # moves land on the pixel, clicks where the pointer is
            left, top, width, height = probe.client_area()
            target = (left + width // 3, top + height // 2)
            mark = probe.mark()
            await tiny.move(*target)
            assert await x11.cursor_position() == target
            await tiny.click("left")
            press = await probe.wait_for_async("button_press", since=mark)
            assert (press["root_x"], press["root_y"], press["button"]) == (*target, 1)
            for corner in ((0, 0), (1279, 799), (1279, 0)):
                await tiny.move(*corner)
                assert await x11.cursor_position() == corner

        # the screenshot shows the screen: a red window where X has it
        with launch_color_window("tinypilot red", "#ff0000", x=500, y=300) as red:
            left, top, width, height = red.client_area()
            snapshot = await tiny.snapshot()
            assert snapshot is not None and snapshot.data[:2] == b"\xff\xd8"
            assert (snapshot.width, snapshot.height) == (1280, 800)
            frame = await tiny.grab(0, Bounds(x=left + 10, y=top + 10, width=20, height=20))
            b, g, r = (int(v) for v in np.mean(frame[..., :3], axis=(0, 1)))
            assert r > 200 and g < 60 and b < 60
            whole = await tiny.grab()
            native = await x11.grab()
            difference = np.abs(whole[..., :3].astype(int) - native[..., :3].astype(int))
            assert whole.shape == native.shape and float(np.mean(difference)) < 8


async def test_a_tinypilot_that_hands_out_no_tokens_asks_for_an_api_key() -> None:
    """TinyPilot Pro 3.2 answers 410 Gone to POST /api/v1/auth (a small stand-in of that one
    answer, over loopback): the driver says to use an API key."""

    async def gone(request: Request) -> Response:
        return JSONResponse({"code": "EPHEMERAL_TOKEN_DEPRECATED"}, status_code=410)

    app = Starlette(routes=[Route("/api/v1/auth", gone, methods=["POST"])])
    async with serve_http(app, "127.0.0.1:0") as server:
        with pytest.raises(DeviceError, match="create an API key") as err:
            await _tinypilot(f"http://{bound_address(server)}").start()
    assert "EPHEMERAL_TOKEN_DEPRECATED" in err.value.details
