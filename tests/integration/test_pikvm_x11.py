"""The pikvm driver against the agent's own PiKVM face, in front of a real X desktop (Xvfb):
typed text reaches a real window, the snapshot shows the screen, absolute moves land on the
pixel asked for, clicks and the wheel arrive, and the agent's native face sees the same
device."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from Xlib.display import Display

from remotehands.agent.config import AgentConfig
from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.runtime import Agent, DeviceRun
from remotehands.drivers.pikvm import PikvmDriver, PikvmSettings
from remotehands.protocol.keys import Key
from remotehands.testing.agents import running_device
from remotehands.testing.xapps import eventually, launch_color_window, launch_probe

pytestmark = [pytest.mark.anyio, pytest.mark.x11]

PASSWORD = "pikvm-face-pw"


def _config(tmp_path: Path, driver: str, settings: dict[str, object]) -> AgentConfig:
    password = tmp_path / "agent.pw"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return AgentConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "password_file": str(password),
        "devices": [{"name": "desk", "driver": driver, "listen": "127.0.0.1:0",
                     "faces": ["native", "pikvm"], "settings": settings}],
    })  # fmt: skip


@pytest.fixture
async def device(desktop: VirtualDesktop, tmp_path: Path) -> AsyncIterator[DeviceRun]:
    async with running_device(Agent.from_config(_config(tmp_path, "x11", {})), "desk") as run:
        yield run


@pytest.fixture
async def pikvm(device: DeviceRun, tmp_path: Path) -> AsyncIterator[PikvmDriver]:
    secret = tmp_path / "device.pw"
    secret.write_text(PASSWORD)
    driver = PikvmDriver.from_settings({"url": f"http://{device.address}",
                                        "password_file": str(secret)})  # fmt: skip
    assert isinstance(driver.settings, PikvmSettings) and driver.settings.user == "admin"
    await driver.start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def peer(desktop: VirtualDesktop) -> Iterator[Display]:
    display = Display(desktop.display)
    try:
        yield display
    finally:
        display.close()


async def test_the_driver_sees_a_desktop_without_power_media_or_switch(
    pikvm: PikvmDriver,
) -> None:
    assert pikvm.capabilities == {"screen", "keyboard", "mouse"}
    assert [s.model_dump() for s in await pikvm.screens()] == [
        {"id": 0, "width": 1280, "height": 800, "x": 0, "y": 0}
    ]
    assert (await pikvm.hardware_id()).startswith("pikvm-host-")


async def test_typed_text_and_keys_reach_a_real_window(pikvm: PikvmDriver) -> None:
    with launch_probe("pikvm probe", x=200, y=150) as probe:
        await pikvm.move(*probe.center())
        await pikvm.click("left")
        await probe.wait_for_async("focus_in")
        await pikvm.type("Hello, PiKVM: 1+1=2!")
        await eventually(lambda: probe.text() == "Hello, PiKVM: 1+1=2!")
        # a key held through the face: Shift stays down until released
        await pikvm.key(Key(code="ShiftLeft"), True)
        await pikvm.key(Key(code="KeyA"), True)
        await pikvm.key(Key(code="KeyA"), False)
        await pikvm.key(Key(code="ShiftLeft"), False)
        await eventually(lambda: probe.text().endswith("!A"))
        assert (await pikvm.held()).keys == frozenset()


async def test_absolute_moves_land_on_the_pixel(pikvm: PikvmDriver, peer: Display) -> None:
    for x, y in ((0, 0), (1279, 799), (640, 400), (17, 733)):
        await pikvm.move(x, y)
        pointer = peer.screen().root.query_pointer()
        assert (pointer.root_x, pointer.root_y) == (x, y)
    assert await pikvm.cursor_position() == (17, 733)


async def test_clicks_and_the_wheel_arrive(pikvm: PikvmDriver) -> None:
    with launch_probe("pikvm clicks", x=300, y=200) as probe:
        x, y = probe.center()
        await pikvm.move(x, y)
        mark = probe.mark()
        await pikvm.click("right")
        press = await probe.wait_for_async("button_press", since=mark)
        assert (press["button"], press["root_x"], press["root_y"]) == (3, x, y)
        mark = probe.mark()
        await pikvm.scroll(0, 2)  # down
        wheel = await probe.wait_for_async("wheel", since=mark)
        assert (wheel["axis"], wheel["direction"]) == ("vertical", 1)
        mark = probe.mark()
        await pikvm.scroll(0, -1)  # up
        wheel = await probe.wait_for_async("wheel", since=mark)
        assert wheel["direction"] == -1


async def test_the_snapshot_shows_the_screen(pikvm: PikvmDriver) -> None:
    with launch_color_window("pikvm colour", color="#20c040", x=100, y=100, width=200,
                             height=160) as window:  # fmt: skip
        x, y = window.center()

        async def green() -> bool:
            frame = await pikvm.snapshot()
            assert frame is not None and frame.format == "jpeg"
            assert (frame.width, frame.height) == (1280, 800)
            rgb = simplejpeg.decode_jpeg(frame.data, colorspace="RGB")
            return bool(np.all(np.abs(rgb[y, x].astype(int) - (0x20, 0xC0, 0x40)) < 24))

        await eventually(green)
        pixels = await pikvm.grab()
        assert pixels.shape == (800, 1280, 4)
        assert np.all(np.abs(pixels[y, x, :3].astype(int) - (0x40, 0xC0, 0x20)) < 24)  # BGR
