"""The ``audio`` capability of a PulseAudio server (or of PipeWire's PulseAudio server), through
libpulse with pulsectl-asyncio: no ``pactl`` output is parsed.

Output devices are the server's sinks: ``id`` is the sink's name (stable across restarts of the
server, where its index is not), ``name`` its description. Sessions are sink inputs, what one
application plays: ``id`` is the sink input's index, ``name`` the application's name as it
told the server, ``pid`` its process. Volumes are the percentages ``pactl`` shows (100 % is
the server's normal volume, the mean of the channels); setting one sets every channel.

Every read asks the server afresh, so a change made outside the agent (a mixer, ``pactl``) shows
on the next one. The server is found as every PulseAudio client finds it (``PULSE_SERVER``,
else ``$XDG_RUNTIME_DIR/pulse/native``), unless a ``server`` address is given. A server that is
not running answers every action with :class:`~remotehands.errors.ServiceUnavailableError`
saying what to start; the connection is made again on the next action, so the agent needs no
restart once the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from remotehands.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeoutError,
    NotFoundError,
    RemoteHandsError,
    ServiceUnavailableError,
)
from remotehands.protocol.models import AudioDevice, AudioSession, AudioState

__all__ = ["DEFAULT_TIMEOUT_S", "PulseAudio", "server_address"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
"""How long one exchange with the sound server (connecting included) may take."""

_START_HINT = (
    "start the user's sound server (PulseAudio: `pulseaudio --start`; PipeWire: "
    "`systemctl --user start pipewire-pulse`), or set PULSE_SERVER to a running one "
    "(`remotehands desktop` starts one and prints it)"
)


def server_address(server: str | None = None) -> str:
    """Where a PulseAudio client looks for the server, in words for messages: ``server``, else
    ``PULSE_SERVER``, else the socket in ``XDG_RUNTIME_DIR``."""
    if server:
        return server
    if os.environ.get("PULSE_SERVER"):
        return f"{os.environ['PULSE_SERVER']} (PULSE_SERVER)"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return f"unix:{runtime}/pulse/native (XDG_RUNTIME_DIR)"
    return "the default socket (XDG_RUNTIME_DIR and PULSE_SERVER are unset)"


def _pulsectl() -> Any:
    """The pulsectl module (libpulse's bindings), imported on first use: the agent serves
    without it, and says what to install when audio is asked for."""
    try:
        import pulsectl
        import pulsectl_asyncio  # noqa: F401 -- its libpulse loop, checked here with the rest
    except ImportError as err:
        raise ConfigError("audio needs pulsectl-asyncio: pip install 'remotehands[agent]'") from err
    except OSError as err:  # libpulse itself is missing
        raise ServiceUnavailableError(
            f"libpulse cannot be loaded ({err}): install it (apt-get install libpulse0)"
        ) from err
    return pulsectl


def _percent(volume: Any) -> float:
    """A pulsectl volume as the percentage ``pactl`` shows (mean of the channels)."""
    return round(float(volume.value_flat) * 100.0, 2)


def _pid(proplist: dict[str, str]) -> int | None:
    with contextlib.suppress(KeyError, ValueError):
        return int(proplist["application.process.id"])
    return None


class PulseAudio:
    """:class:`~remotehands.drivers.base.Audio` on a PulseAudio server (a part a driver holds).

    ``server`` is the server's address (``unix:/run/user/1000/pulse/native``,
    ``tcp:host:4713``); None finds it as every client does. ``timeout_s`` bounds each exchange.
    Use it from one event loop, and :meth:`close` it.
    """

    def __init__(self, server: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.server = server
        self.timeout_s = timeout_s
        self._pulse: Any = None
        self._connecting = asyncio.Lock()

    @property
    def where(self) -> str:
        """The server's address in words, as messages name it."""
        return server_address(self.server)

    # -- connection ----------------------------------------------------------------------

    async def _connected(self) -> Any:
        async with self._connecting:
            if self._pulse is not None and self._pulse.connected:
                return self._pulse
            self._drop()
            lib = _pulsectl()
            from pulsectl_asyncio import PulseAsync  # loadable once _pulsectl() is

            pulse = PulseAsync("remotehands", server=self.server)
            try:
                await pulse.connect(timeout=self.timeout_s)
            except (lib.PulseError, TimeoutError) as err:
                pulse.close()
                raise ServiceUnavailableError(
                    f"no sound server answers at {self.where}: {_START_HINT}"
                ) from err
            self._pulse = pulse
            return pulse

    def _drop(self) -> None:
        pulse, self._pulse = self._pulse, None
        if pulse is not None:
            pulse.close()

    async def available(self) -> bool:
        """Whether a sound server answers now."""
        try:
            await self._exchange("reach the sound server", lambda p: p.server_info())
        except RemoteHandsError:
            return False
        return True

    async def close(self) -> None:
        """Close the connection; the next action makes a new one."""
        async with self._connecting:
            self._drop()

    async def _exchange(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(pulse)`` on a live connection, within the timeout; errors translated. A
        connection the server dropped (it restarted) is made again once."""
        lib = _pulsectl()
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self.timeout_s):
                    pulse = await self._connected()
                    return await fn(pulse)
            except lib.PulseDisconnected as err:
                async with self._connecting:
                    self._drop()
                if attempt == 2:
                    raise ServiceUnavailableError(
                        f"{what}: the sound server at {self.where} went away: {_START_HINT}"
                    ) from err
            except TimeoutError as err:
                async with self._connecting:
                    self._drop()
                raise DeviceTimeoutError(
                    f"{what}: the sound server at {self.where} did not answer within "
                    f"{self.timeout_s:g} s"
                ) from err
            except lib.PulseIndexError as err:
                raise NotFoundError(f"{what}: it is gone (read audio status again)") from err
            except lib.PulseError as err:
                raise DeviceError(f"{what}: the sound server refused: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover -- the loop returns or raises

    # -- lookups -------------------------------------------------------------------------

    @staticmethod
    async def _sink(pulse: Any, device_id: str | None) -> Any:
        """The sink ``device_id`` (a name, or an index as digits), or the default sink."""
        sinks = await pulse.sink_list()
        if device_id is None:
            default = (await pulse.server_info()).default_sink_name
            found = next((s for s in sinks if s.name == default), None)
            if found is None:
                raise NotFoundError("there is no default output device: name one (device_id)")
            return found
        for sink in sinks:
            if sink.name == device_id or (device_id.isdigit() and sink.index == int(device_id)):
                return sink
        known = ", ".join(s.name for s in sinks) or "none"
        raise NotFoundError(f"no output device {device_id!r}: the devices are {known}")

    @staticmethod
    async def _sink_input(pulse: Any, session_id: str) -> Any:
        for stream in await pulse.sink_input_list():
            if str(stream.index) == session_id:
                return stream
        raise NotFoundError(
            f"no audio session {session_id!r}: it ended, or read audio status for the sessions"
        )

    # -- the Audio Protocol --------------------------------------------------------------

    async def audio_status(self) -> AudioState:
        """Every sink and every sink input, read from the server now."""

        async def read(pulse: Any) -> AudioState:
            info = await pulse.server_info()
            sinks = await pulse.sink_list()
            streams = await pulse.sink_input_list()
            names = {s.index: s.name for s in sinks}
            devices = [
                AudioDevice(id=s.name, name=s.description or s.name, volume=_percent(s.volume),
                            muted=bool(s.mute), default=s.name == info.default_sink_name)
                for s in sinks
            ]  # fmt: skip
            sessions = [
                AudioSession(
                    id=str(i.index),
                    name=i.proplist.get("application.name") or i.name or f"stream {i.index}",
                    pid=_pid(i.proplist), volume=_percent(i.volume), muted=bool(i.mute),
                    device_id=names.get(i.sink),
                )
                for i in streams
            ]  # fmt: skip
            return AudioState(devices=devices, sessions=sessions)

        return await self._exchange("read the audio state", read)

    async def audio_volume(
        self, volume: float, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Set every channel of a sink input, or of a sink (the default one when neither is
        named), to ``volume`` percent."""

        async def change(pulse: Any) -> None:
            target = (await self._sink_input(pulse, session_id) if session_id is not None
                      else await self._sink(pulse, device_id))  # fmt: skip
            await pulse.volume_set_all_chans(target, volume / 100.0)

        await self._exchange("set the volume", change)

    async def audio_mute(
        self, muted: bool, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Mute or unmute a sink input, or a sink (the default one when neither is named)."""

        async def change(pulse: Any) -> None:
            target = (await self._sink_input(pulse, session_id) if session_id is not None
                      else await self._sink(pulse, device_id))  # fmt: skip
            await pulse.mute(target, muted)

        await self._exchange("mute" if muted else "unmute", change)

    async def audio_default(self, device_id: str) -> None:
        """Make the sink ``device_id`` the server's default."""

        async def change(pulse: Any) -> None:
            await pulse.default_set(await self._sink(pulse, device_id))

        await self._exchange("set the default output device", change)

    async def audio_move(self, session_id: str, device_id: str) -> None:
        """Move the sink input ``session_id`` to the sink ``device_id``."""

        async def change(pulse: Any) -> None:
            stream = await self._sink_input(pulse, session_id)
            sink = await self._sink(pulse, device_id)
            await pulse.sink_input_move(stream.index, sink.index)

        await self._exchange("move the session", change)
