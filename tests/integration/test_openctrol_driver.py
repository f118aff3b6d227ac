"""The openctrol driver against the agent's own Openctrol face, fronting a real X desktop
(Xvfb): frames show the screen, typed text and clicks arrive in a real window, a monitor is
selected, sessions are renewed before they expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.dispatch import Dispatcher
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.openctrol.client import OpenctrolHTTPError
from remotehands.drivers.openctrol.driver import OpenctrolDriver, OpenctrolSettings
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import (
    AuthError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedError,
)
from remotehands.protocol.keys import Key
from remotehands.protocol.models import ScreenInfo
from remotehands.testing.xapps import eventually, launch_color_window, launch_probe
from tests.integration.openctrol_harness import PASSWORD, Served, TwoScreens, serve_openctrol

pytestmark = [pytest.mark.anyio, pytest.mark.x11]


@pytest.fixture
async def face(desktop: VirtualDesktop) -> AsyncIterator[Served]:
    async with serve_openctrol(X11Driver(), {"allow_ha_ids": ["remotehands"]}) as served:
        yield served


def _settings(served: Served, tmp_path: Path, **more: object) -> OpenctrolSettings:
    key = tmp_path / "openctrol.key"
    key.write_text(PASSWORD + "\n")
    return OpenctrolSettings.model_validate({"url": served.url, "password_file": str(key), **more})


@pytest.fixture
async def driver(face: Served, tmp_path: Path) -> AsyncIterator[OpenctrolDriver]:
    openctrol = OpenctrolDriver(_settings(face, tmp_path))
    async with openctrol:
        yield openctrol


def _pixel(frame: object, x: int, y: int) -> tuple[int, int, int]:
    b, g, r = frame[y, x, :3]  # type: ignore[index]  # a BGRX numpy frame
    return int(r), int(g), int(b)


def _near(rgb: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 24 for a, b in zip(rgb, want, strict=True))


async def test_frames_show_the_screen(driver: OpenctrolDriver) -> None:
    assert await driver.screens() == [ScreenInfo(id=0, width=1280, height=800)]
    with launch_color_window("octl colour", "#ff0000", x=500, y=300) as window:
        x, y = await asyncio.to_thread(window.center)

        async def shows(colour: tuple[int, int, int]) -> bool:
            return _near(_pixel(await driver.grab(0), x, y), colour)

        await eventually(lambda: shows((255, 0, 0)))
        await asyncio.to_thread(window.set_color, "#0000ff")
        await eventually(lambda: shows((0, 0, 255)))
        region = await driver.grab(0, None)
        assert region.shape == (800, 1280, 4)
        snapshot = await driver.snapshot(0)
        assert snapshot is not None and snapshot.format == "jpeg"
        assert (snapshot.width, snapshot.height) == (1280, 800)


async def test_typed_text_and_clicks_arrive_in_a_real_window(driver: OpenctrolDriver) -> None:
    with launch_probe("octl probe", x=320, y=220) as probe:
        x, y = await asyncio.to_thread(probe.center)
        mark = probe.mark()
        await driver.move(x, y)
        await driver.click("left")
        press = await probe.wait_for_async("button_press", since=mark)
        assert press["button"] == 1
        assert (press["root_x"], press["root_y"]) == (x, y)
        await asyncio.to_thread(probe.focus)
        await driver.type("Hello, wörld")
        await eventually(lambda: probe.text() == "Hello, wörld")
        # keys by virtual-key code: shift+a, then Enter
        await driver.key(Key(code="ShiftLeft"), True)
        await driver.key(Key(code="KeyA"), True)
        await driver.key(Key(code="KeyA"), False)
        await driver.key(Key(code="ShiftLeft"), False)
        await eventually(lambda: probe.text() == "Hello, wörldA")
        assert not await driver.held()
        mark = probe.mark()
        await driver.scroll(0, 2)
        wheel = await probe.wait_for_async("wheel", since=mark)
        assert wheel["direction"] == 1  # down


async def test_the_dispatcher_runs_actions_through_the_driver(driver: OpenctrolDriver) -> None:
    dispatcher = Dispatcher(driver)
    with launch_probe("octl probe 2", x=300, y=240) as probe:
        x, y = await asyncio.to_thread(probe.center)
        await dispatcher.run("mouse.click", {"x": x, "y": y})
        await asyncio.to_thread(probe.focus)
        await dispatcher.run("keyboard.type", {"text": "via actions"})
        await eventually(lambda: probe.text() == "via actions")
        shot = await dispatcher.run("screenshot", {})
        assert shot["width"] == 1280 and shot["image"][:2] == b"\xff\xd8"
    await dispatcher.aclose()
    with pytest.raises(UnsupportedError, match="power_restart"):
        await driver.power_on()


async def test_a_monitor_is_selected(face: Served, driver: OpenctrolDriver) -> None:
    assert driver.client is not None
    monitors = await driver.client.monitors()
    assert monitors["current_monitor_id"] == "DISPLAY1"
    await driver.client.select_monitor("DISPLAY1")
    assert face.face.monitors.selected == 0
    with pytest.raises(OpenctrolHTTPError, match="DISPLAY2") as unknown:
        await driver.client.select_monitor("DISPLAY2")
    assert (unknown.value.status, unknown.value.error) == (404, "not_found")
    with pytest.raises(NotFoundError, match="no screen 1"):
        await driver.grab(1)
    health = await driver.client.health()
    assert health["remote_desktop"]["desktop_state"] == "desktop"
    assert await driver.hardware_id() == f"openctrol-{face.face.agent_id}"


async def test_sessions_are_renewed_before_they_expire(face: Served, tmp_path: Path) -> None:
    openctrol = OpenctrolDriver(_settings(face, tmp_path, ttl_s=60, renew_before_s=59.5))
    async with openctrol:
        assert openctrol.stream is not None
        first = openctrol.stream.session.id
        # the new session is opened, then swapped in, then the old one ended
        await eventually(
            lambda: openctrol.stream is not None and openctrol.stream.session.id != first
        )
        assert openctrol.sessions_opened >= 2
        await eventually(lambda: face.face.broker.get(first) is None)  # the old one was ended
        assert (await openctrol.grab(0)).shape == (800, 1280, 4)
    assert face.face.broker.active() == 0  # closing ends the session


async def test_a_wrong_key_is_an_auth_error(face: Served, tmp_path: Path) -> None:
    key = tmp_path / "wrong.key"
    key.write_text("not the key")
    openctrol = OpenctrolDriver(OpenctrolSettings(url=face.url, password_file=key))
    with pytest.raises(AuthError, match="API key"):
        async with openctrol:
            pass


# -- power and audio, against the face fronting a fake device with both ---------------------


@pytest.fixture
async def fake_pair(tmp_path: Path) -> AsyncIterator[tuple[FakeDriver, OpenctrolDriver]]:
    device = FakeDriver(320, 200)
    async with (
        serve_openctrol(device, {"allow_ha_ids": ["remotehands"]}) as served,
        OpenctrolDriver(_settings(served, tmp_path)) as openctrol,
    ):
        assert isinstance(openctrol, OpenctrolDriver)
        yield device, openctrol


async def test_power_restarts_and_shuts_down(fake_pair: tuple[FakeDriver, OpenctrolDriver]) -> None:
    device, openctrol = fake_pair
    state = await openctrol.power_state()
    assert state.on is True and state.actions == ["restart", "shutdown"]
    await openctrol.power_restart()
    assert device.resets == 1
    await openctrol.power_shutdown()
    assert "power_shutdown" in device.call_names()
    with pytest.raises(UnsupportedError, match="ATX"):
        await openctrol.power_off_hard()


async def test_audio_through_the_driver(fake_pair: tuple[FakeDriver, OpenctrolDriver]) -> None:
    device, openctrol = fake_pair
    status = await openctrol.audio_status()
    assert [(d.id, d.volume, d.default) for d in status.devices] == [
        ("fake-speakers", 100.0, True),
        ("fake-headphones", 40.0, False),
    ]
    assert [(s.id, s.name, s.device_id) for s in status.sessions] == [
        ("1", "fakeplayer", "fake-speakers")
    ]
    await openctrol.audio_volume(60, device_id="fake-headphones")
    assert device.audio_devices[1].volume == pytest.approx(60)
    await openctrol.audio_volume(1, device_id="fake-headphones")  # 1 %, not full volume
    assert device.audio_devices[1].volume == pytest.approx(1)
    await openctrol.audio_volume(35)  # the default device
    assert device.audio_devices[0].volume == pytest.approx(35)
    await openctrol.audio_mute(True)
    assert device.audio_devices[0].muted
    await openctrol.audio_default("fake-headphones")
    assert device.default_audio_device == "fake-headphones"
    await openctrol.audio_volume(20, session_id="1")
    await openctrol.audio_mute(True, session_id="1")
    await openctrol.audio_move("1", "fake-headphones")
    session = device.audio_sessions[0]
    assert session.volume == pytest.approx(20)
    assert (session.muted, session.device_id) == (True, "fake-headphones")
    with pytest.raises(NotFoundError):
        await openctrol.audio_volume(10, device_id="nope")
    device.audio_down = "no sound server: start pulseaudio"
    with pytest.raises(ServiceUnavailableError, match="start pulseaudio"):
        await openctrol.audio_status()


async def test_relative_moves_arrive(face: Served, driver: OpenctrolDriver) -> None:
    await driver.move(200, 150)
    await driver.move_by(15, -10)

    x11 = face.driver
    assert isinstance(x11, X11Driver)

    async def arrived() -> bool:
        return await x11.cursor_position() == (215, 140)

    await eventually(arrived)
    assert await driver.cursor_position() == (215, 140)


class _Locked(FakeDriver):
    async def desktop_state(self) -> str:
        return "locked"


async def test_the_desktop_state_passes_through_a_chain_of_agents(tmp_path: Path) -> None:
    async with serve_openctrol(_Locked(160, 100), {"allow_ha_ids": ["remotehands"]}) as inner:
        openctrol = OpenctrolDriver(_settings(inner, tmp_path))
        # the harness starts the driver: an agent fronting the Openctrol agent, with a face
        async with serve_openctrol(openctrol, {"allow_ha_ids": ["remotehands"]}) as outer:
            assert await openctrol.desktop_state() == "locked"
            async with httpx.AsyncClient(base_url=outer.url, timeout=10) as http:
                health = (await http.get("/api/v1/health")).json()["remote_desktop"]
            assert health["desktop_state"] == "locked"


async def test_grabbing_another_screen_selects_its_monitor(tmp_path: Path) -> None:
    device = TwoScreens()
    device.second[..., 1] = 255  # green
    async with (
        serve_openctrol(device, {"allow_ha_ids": ["remotehands"]}) as served,
        OpenctrolDriver(_settings(served, tmp_path)) as started,
    ):
        assert isinstance(started, OpenctrolDriver)
        openctrol = started
        assert [(s.id, s.width, s.height) for s in await openctrol.screens()] == [
            (0, 320, 200),
            (1, 160, 100),
        ]
        assert (await openctrol.grab(0)).shape == (200, 320, 4)
        second = await openctrol.grab(1)
        assert second.shape == (100, 160, 4) and _near(_pixel(second, 80, 50), (0, 255, 0))
        assert served.face.monitors.selected == 1
        await openctrol.move(10, 10)  # on the selected monitor
        await eventually(lambda: device.pointer == (330, 10))
