"""The contract of audio drivers, for the drivers that declare audio (see conftest.py; the x11
driver has it where a sound server answers, and is tested against a real one with a playing
client in tests/integration/test_audio.py): the state read back follows what they are asked,
unknown ids are NotFound, and a volume is a percentage."""

from __future__ import annotations

from typing import Any

import pytest

from remotehands.errors import NotFoundError
from remotehands.protocol.models import AudioState

pytestmark = pytest.mark.anyio


def _default(state: AudioState) -> Any:
    return next(d for d in state.devices if d.default)


@pytest.mark.needs("audio")
async def test_the_state_follows_volume_mute_and_default(driver: Any) -> None:
    state = await driver.audio_status()
    assert isinstance(state, AudioState) and state.devices
    assert sum(d.default for d in state.devices) == 1
    default = _default(state)
    try:
        await driver.audio_volume(37.0)
        assert _default(await driver.audio_status()).volume == pytest.approx(37, abs=0.01)
        await driver.audio_mute(True, device_id=default.id)
        assert _default(await driver.audio_status()).muted is True
        await driver.audio_mute(False)
        assert _default(await driver.audio_status()).muted is False
        other = next((d for d in state.devices if not d.default), None)
        if other is not None:
            await driver.audio_default(other.id)
            assert _default(await driver.audio_status()).id == other.id
            await driver.audio_default(default.id)
        for session in state.sessions:
            assert session.device_id in {d.id for d in state.devices}
    finally:
        await driver.audio_volume(default.volume, device_id=default.id)
        await driver.audio_mute(default.muted, device_id=default.id)


@pytest.mark.needs("audio")
async def test_unknown_ids_are_not_found(driver: Any) -> None:
    with pytest.raises(NotFoundError):
        await driver.audio_default("no-such-output")
    with pytest.raises(NotFoundError):
        await driver.audio_volume(10.0, device_id="no-such-output")
    with pytest.raises(NotFoundError):
        await driver.audio_mute(True, session_id="987654")
    any_device = (await driver.audio_status()).devices[0].id
    with pytest.raises(NotFoundError):
        await driver.audio_move("987654", any_device)
