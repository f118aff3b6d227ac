"""The contract of power, virtual media and KVM switch drivers, for the drivers that declare
those capabilities (see conftest.py): the state they report follows what they are asked, an
upload is streamed and leaves nothing behind when it fails, and a mounted image is protected."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from remotehands.errors import NotFoundError, RemoteHandsError
from remotehands.protocol.models import MediaState, PowerState, SwitchState
from remotehands.testing.xapps import eventually

pytestmark = pytest.mark.anyio


async def _chunks(data: bytes, piece: int, fail_at: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        if fail_at is not None and start >= fail_at:
            raise OSError("the source broke")
        yield data[start : start + piece]


@pytest.mark.needs("power")
async def test_the_power_led_follows_the_power_actions(driver: Any) -> None:
    state = await driver.power_state()
    assert isinstance(state, PowerState)

    async def led() -> bool | None:
        now: PowerState = await driver.power_state()
        return now.on

    if "off_hard" in state.actions and "on" in state.actions:
        await driver.power_off_hard()
        await eventually(lambda: _is(led, False), timeout=15)
        await driver.power_on()
        await eventually(lambda: _is(led, True), timeout=15)
    if "reset" in state.buttons:
        await driver.power_click("reset")


async def _is(read: Any, expected: bool) -> bool:
    return bool(await read() is expected)


def _names(state: MediaState) -> dict[str, tuple[int, bool]]:
    return {image.name: (image.size, image.complete) for image in state.images}


@pytest.mark.needs("media")
async def test_an_image_is_uploaded_mounted_protected_ejected_and_removed(driver: Any) -> None:
    name = f"contract-{os.urandom(4).hex()}.img"
    data = os.urandom((1 << 20) + 7)
    before = await driver.media_state()
    assert isinstance(before, MediaState) and name not in _names(before)
    image = await driver.media_upload(name, _chunks(data, 64 << 10), len(data))
    assert (image.name, image.size, image.complete) == (name, len(data), True)
    assert _names(await driver.media_state())[name] == (len(data), True)
    with pytest.raises(RemoteHandsError):
        await driver.media_upload(name, _chunks(b"again", 5), 5)  # the name is taken
    assert _names(await driver.media_state())[name] == (len(data), True)

    drive = await driver.media_mount(name, True, False)
    assert (drive.image, drive.connected, drive.cdrom) == (name, True, True)
    with pytest.raises(RemoteHandsError):
        await driver.media_remove(name)  # in the drive
    drive = await driver.media_eject()
    assert drive.connected is False and drive.image is None
    await driver.media_remove(name)
    assert name not in _names(await driver.media_state())
    with pytest.raises(NotFoundError):
        await driver.media_remove(name)


@pytest.mark.needs("media")
async def test_a_failed_upload_leaves_nothing_registered(driver: Any) -> None:
    name = f"broken-{os.urandom(4).hex()}.img"
    data = os.urandom(1 << 20)
    with pytest.raises((OSError, RemoteHandsError)):
        await driver.media_upload(name, _chunks(data, 64 << 10, fail_at=512 << 10), len(data))
    assert name not in _names(await driver.media_state())
    with pytest.raises(RemoteHandsError):  # fewer bytes than announced
        await driver.media_upload(name, _chunks(data[:100], 50), len(data))
    assert name not in _names(await driver.media_state())


@pytest.mark.needs("switch")
async def test_the_switch_shows_the_port_it_is_set_to(driver: Any) -> None:
    state = await driver.switch_ports()
    assert isinstance(state, SwitchState)
    if len(state.ports) < 2:
        pytest.skip("a switch of fewer than two ports")
    await driver.switch_set(1)
    assert (await driver.switch_ports()).active == 1
    await driver.switch_beacon(1, True)
    assert (await driver.switch_ports()).ports[1].beacon is True
    await driver.switch_beacon(1, False)
    with pytest.raises(RemoteHandsError):
        await driver.switch_set(len(state.ports) + 5)
