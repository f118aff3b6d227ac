"""FakeAudio: an in-memory sound server, the ``audio`` capability of :class:`FakeDriver`.

It has two output devices (``fake-speakers``, the default, and ``fake-headphones``) and one
application playing on the default one (``fakeplayer``), so that every audio action has
something to act on without a sound server. Its state is public: a test changes it directly to
play a change made outside the agent (a user moving a slider), and sets
:attr:`FakeAudio.audio_down` to play a sound server that is not running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remotehands.errors import NotFoundError, ServiceUnavailableError
from remotehands.protocol.models import AudioDevice, AudioSession, AudioState

__all__ = ["FakeAudio", "FakeAudioDevice", "FakeAudioSession"]


@dataclass
class FakeAudioDevice:
    """An output device of the fake sound server; ``volume`` in percent."""

    id: str
    name: str
    volume: float = 100.0
    muted: bool = False


@dataclass
class FakeAudioSession:
    """An application playing on the fake sound server, on the device ``device_id``."""

    id: str
    name: str
    device_id: str
    pid: int | None = None
    volume: float = 100.0
    muted: bool = False


class FakeAudio:
    """The ``audio`` capability in memory (a mixin: FakeDriver has it among its bases)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audio_devices: list[FakeAudioDevice] = [
            FakeAudioDevice("fake-speakers", "Fake speakers"),
            FakeAudioDevice("fake-headphones", "Fake headphones", volume=40.0),
        ]
        self.default_audio_device = "fake-speakers"
        self.audio_sessions: list[FakeAudioSession] = [
            FakeAudioSession("1", "fakeplayer", "fake-speakers", pid=4343)
        ]
        self.audio_down: str | None = None
        """When set, every audio call fails with
        :class:`~remotehands.errors.ServiceUnavailableError` and this text, as it does when
        the sound server is not running."""

    def _audio_device(self, device_id: str | None) -> FakeAudioDevice:
        if self.audio_down is not None:
            raise ServiceUnavailableError(self.audio_down)
        wanted = self.default_audio_device if device_id is None else device_id
        for device in self.audio_devices:
            if device.id == wanted:
                return device
        known = ", ".join(d.id for d in self.audio_devices)
        raise NotFoundError(f"no output device {wanted!r}: the devices are {known}")

    def _audio_session(self, session_id: str) -> FakeAudioSession:
        if self.audio_down is not None:
            raise ServiceUnavailableError(self.audio_down)
        for session in self.audio_sessions:
            if session.id == session_id:
                return session
        raise NotFoundError(
            f"no audio session {session_id!r}: it ended, or read audio status for the sessions"
        )

    async def audio_status(self) -> AudioState:
        """The devices and sessions as they are now."""
        if self.audio_down is not None:
            raise ServiceUnavailableError(self.audio_down)
        return AudioState(
            devices=[
                AudioDevice(id=d.id, name=d.name, volume=d.volume, muted=d.muted,
                            default=d.id == self.default_audio_device)
                for d in self.audio_devices
            ],
            sessions=[
                AudioSession(id=s.id, name=s.name, pid=s.pid, volume=s.volume, muted=s.muted,
                             device_id=s.device_id)
                for s in self.audio_sessions
            ],
        )  # fmt: skip

    async def audio_volume(
        self, volume: float, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Set a session's volume, or a device's (the default one when neither is named)."""
        target = (self._audio_session(session_id) if session_id is not None
                  else self._audio_device(device_id))  # fmt: skip
        target.volume = float(volume)

    async def audio_mute(
        self, muted: bool, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Mute or unmute a session, or a device (the default one when neither is named)."""
        target = (self._audio_session(session_id) if session_id is not None
                  else self._audio_device(device_id))  # fmt: skip
        target.muted = muted

    async def audio_default(self, device_id: str) -> None:
        """Make ``device_id`` the default output device."""
        self.default_audio_device = self._audio_device(device_id).id

    async def audio_move(self, session_id: str, device_id: str) -> None:
        """Play a session on another output device."""
        session = self._audio_session(session_id)
        session.device_id = self._audio_device(device_id).id
