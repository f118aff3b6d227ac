"""The openctrol driver: a Windows PC running an Openctrol agent, as a remotehands device.

Glue over :mod:`remotehands.drivers.openctrol.client`: the driver opens a desktop session for
its ``ha_id`` and keeps its ``/ws/desktop`` socket open, renewing the session
``renew_before_s`` before it expires (a new session and socket first, then the old one ended),
and reopening it if it closes.

- screen: the socket's frames (the agent sends one when the screen changed); a grab is the
  latest frame, or the next one when none came yet, decoded; the JPEG itself is handed on
  unchanged when nothing asks for pixels (:class:`~remotehands.drivers.base.EncodedScreen`).
  Screen ``n`` is the monitor ``DISPLAY<n+1>`` of the hello; grabbing another screen selects
  it. Coordinates are pixels of the selected monitor (Openctrol addresses one monitor at a
  time, 0-65535 across it).
- keyboard: keys as Windows virtual-key codes (:data:`~remotehands.drivers.openctrol.wire.
  VK_BY_CODE`), a character key typed as text; text as ``text`` messages.
- mouse: absolute moves, buttons, the wheel (120 units a notch). Openctrol cannot tell where
  the pointer is: the driver answers where it last put it.
- power: ``restart`` and ``shutdown`` of the operating system; the ATX actions are not there.
- audio: devices, sessions, volume, mute, the default device and per-application routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import numpy as np
from pydantic import Field, model_validator

from remotehands.drivers.base import Button, Driver, EncodedFrame, FrameArray, Held
from remotehands.drivers.openctrol.client import (
    VK_BY_CODE,
    DesktopStream,
    Folded,
    OpenctrolClient,
    OpenctrolError,
    OpenctrolHTTPError,
    OpenctrolTimeout,
)
from remotehands.drivers.remote import RemoteSettings
from remotehands.errors import (
    AuthError,
    DeviceError,
    DeviceTimeoutError,
    NotFoundError,
    RateLimitedError,
    RemoteHandsError,
    ServiceUnavailableError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol.keys import Key
from remotehands.protocol.models import (
    AudioDevice,
    AudioSession,
    AudioState,
    Bounds,
    PowerButton,
    PowerState,
    ScreenInfo,
)

__all__ = ["OpenctrolDriver", "OpenctrolSettings"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_BY_STATUS: dict[int, type[RemoteHandsError]] = {
    400: ValidationError,
    401: AuthError,
    404: NotFoundError,
    429: RateLimitedError,
    501: UnsupportedError,
    503: ServiceUnavailableError,
}


def _translated(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The client's errors, as remotehands errors, where they enter the driver."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except OpenctrolHTTPError as err:
            hint = ""
            if err.status == 401:
                hint = " (check the API key: REMOTEHANDS_DEVICE_PASSWORD or password_file)"
            raise _BY_STATUS.get(err.status, DeviceError)(
                f"the Openctrol agent refused {err}{hint}"
            ) from err
        except OpenctrolTimeout as err:
            raise DeviceTimeoutError(str(err)) from err
        except OpenctrolError as err:
            raise DeviceError(str(err)) from err

    return wrapper


class OpenctrolSettings(RemoteSettings):
    """Settings of the openctrol driver: the agent's ``url`` (``http://pc:44325``) and its API
    key in ``password_env`` or ``password_file``, plus the session it opens."""

    ha_id: str = Field("remotehands", min_length=1, max_length=256)
    """The Home Assistant id the driver's desktop sessions are issued to (the agent may allow
    only some)."""
    ttl_s: int = Field(900, ge=60, le=3600)
    """How long each desktop session lives before the driver renews it."""
    renew_before_s: float = Field(60.0, gt=0)
    """Renew a session this long before it expires."""
    frame_timeout_s: float = Field(5.0, gt=0, le=120)
    """How long a grab waits for a frame when none came yet."""

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> OpenctrolSettings:
        if self.renew_before_s >= self.ttl_s:
            raise ValueError("renew_before_s must be shorter than ttl_s")
        return self


class OpenctrolDriver(Driver):
    """A PC behind an Openctrol agent."""

    kind = "openctrol"
    device_type = "desktop"
    capabilities = frozenset({"screen", "keyboard", "mouse", "power", "audio"})
    Settings = OpenctrolSettings

    def __init__(self, settings: OpenctrolSettings | None = None) -> None:
        if settings is None:
            raise ValidationError("the openctrol driver needs settings: at least its url")
        super().__init__(settings)
        self.settings: OpenctrolSettings = settings
        self.client: OpenctrolClient | None = None
        self.stream: DesktopStream | None = None
        self._opening = asyncio.Lock()
        self._renewer: asyncio.Task[None] | None = None
        self._renewing: asyncio.Future[None] | None = None
        self._selected = 0
        self._pointer = (0, 0)
        self._keys: list[str] = []
        self._buttons: set[Button] = set()
        self.agent_id = ""
        self.sessions_opened = 0
        self._live: set[str] = set()  # sessions opened and not ended yet

    # -- life --------------------------------------------------------------------------------
    @_translated
    async def start(self) -> None:
        """Check the agent answers, open a desktop session and its socket."""
        s = self.settings
        verify: Any = str(s.ca_file) if s.ca_file is not None else s.verify_tls
        if isinstance(verify, str):
            import ssl

            verify = ssl.create_default_context(cafile=verify)
        self.client = OpenctrolClient(s.url, s.password(), verify=verify, timeout_s=s.timeout_s)
        health = await self.client.health()
        self.agent_id = str(health.get("agent_id", ""))
        await self._desktop()
        self._renewer = asyncio.create_task(self._renew(), name="openctrol session renewal")

    async def close(self) -> None:
        """Release what is held, end the session, close the connections."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._renewing is not None:
            await asyncio.gather(self._renewing, return_exceptions=True)
            self._renewing = None
        if self.stream is not None and not self.stream.closed.is_set():
            with contextlib.suppress(RemoteHandsError):
                await self.release_all()
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.aclose()
        for session_id in list(self._live):
            await self._end(session_id)
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def hardware_id(self) -> str:
        """The agent's own id, else one derived from the settings."""
        return f"openctrol-{self.agent_id}" if self.agent_id else await super().hardware_id()

    def _client(self) -> OpenctrolClient:
        if self.client is None:
            raise DeviceError("the openctrol driver is not started (or was closed)")
        return self.client

    async def _open(self) -> DesktopStream:
        client = self._client()
        session = await client.create_session(self.settings.ha_id, self.settings.ttl_s)
        self._live.add(session.id)
        stream = await client.desktop(session, open_timeout_s=self.settings.timeout_s)
        self.sessions_opened += 1
        if 0 < self._selected < len(stream.monitors):
            await stream.select_monitor(str(stream.monitors[self._selected]["id"]))
        return stream

    async def _end(self, session_id: str) -> None:
        """End a session of ours; one the agent no longer knows is ended already."""
        self._live.discard(session_id)
        if self.client is not None:
            with contextlib.suppress(OpenctrolError):
                await self.client.end_session(session_id)

    async def _desktop(self) -> DesktopStream:
        """The open desktop socket, (re)opened when it closed."""
        async with self._opening:
            if self.stream is None or self.stream.closed.is_set():
                old, self.stream = self.stream, None
                if old is not None:
                    log.warning(
                        "openctrol: the desktop socket closed (%s): reopening", old.close_reason
                    )
                    await old.aclose()
                    await self._end(old.session.id)
                self.stream = await self._open()
            return self.stream

    async def _renew(self) -> None:
        """Replace the session before it expires: the new socket first, then end the old."""
        while True:
            try:
                stream = await self._desktop()
                left = (stream.session.expires_at - datetime.now(UTC)).total_seconds()
                await asyncio.sleep(max(0.0, left - self.settings.renew_before_s))
                # The swap runs to its end even when the driver closes meanwhile, so that no
                # session it opened is left on the agent (close waits for it).
                self._renewing = asyncio.ensure_future(self._replace(stream))
                await asyncio.shield(self._renewing)
            except (RemoteHandsError, OpenctrolError) as err:
                log.warning("openctrol: renewing the desktop session failed: %s; retrying", err)
                await asyncio.sleep(min(5.0, self.settings.renew_before_s / 2))

    async def _replace(self, stream: DesktopStream) -> None:
        async with self._opening:
            if self.stream is not stream:
                return  # reopened meanwhile: that one is renewed in its turn
            self.stream = await self._open()
        await stream.aclose()
        await self._end(stream.session.id)

    # -- screen ------------------------------------------------------------------------------
    @_translated
    async def screens(self) -> list[ScreenInfo]:
        stream = await self._desktop()
        return [
            ScreenInfo(id=i, width=int(m.get("width", 0)), height=int(m.get("height", 0)))
            for i, m in enumerate(stream.monitors)
        ]

    async def _select(self, screen_id: int) -> DesktopStream:
        stream = await self._desktop()
        if screen_id != self._selected:
            if not 0 <= screen_id < len(stream.monitors):
                raise NotFoundError(
                    f"no screen {screen_id}: this PC has {len(stream.monitors)} monitors, "
                    f"0-{len(stream.monitors) - 1}"
                )
            seq = stream.latest.seq if stream.latest else 0
            await stream.select_monitor(str(stream.monitors[screen_id]["id"]))
            self._selected = screen_id
            # A frame of the old monitor may still be on its way: wait for the new one.
            await stream.frame_after(seq, self.settings.frame_timeout_s)
        return stream

    async def _frame_jpeg(self, screen_id: int) -> tuple[bytes, int, int]:
        stream = await self._select(screen_id)
        frame = stream.latest or await stream.frame_after(0, self.settings.frame_timeout_s)
        return frame.data, frame.width, frame.height

    @_translated
    async def snapshot(self, screen_id: int = 0) -> EncodedFrame | None:
        """The latest frame's JPEG, as the agent encoded it."""
        data, width, height = await self._frame_jpeg(screen_id)
        return EncodedFrame(data=data, format="jpeg", width=width, height=height)

    @_translated
    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        data, _, _ = await self._frame_jpeg(screen_id)
        frame = await asyncio.to_thread(_decode, data)
        if region is None:
            return frame
        height, width = frame.shape[:2]
        if region.x + region.width > width or region.y + region.height > height:
            raise ValidationError(
                f"region {region.x},{region.y} {region.width}x{region.height}"
                f" leaves the {width}x{height} screen"
            )
        return frame[region.y : region.y + region.height, region.x : region.x + region.width]

    async def cursor_position(self) -> tuple[int, int]:
        return self._pointer

    # -- mouse -------------------------------------------------------------------------------
    @_translated
    async def move(self, x: int, y: int) -> None:
        stream = await self._desktop()
        monitors = stream.monitors
        monitor = monitors[self._selected] if self._selected < len(monitors) else Folded({})
        width, height = int(monitor.get("width", 0)), int(monitor.get("height", 0))
        if not (0 <= x < width and 0 <= y < height):
            raise ValidationError(f"({x}, {y}) is off the {width}x{height} monitor")
        # The centre of the pixel, so that the agent's rounding lands on it.
        nx = min(65535, int((x + 0.5) * 65535 / width))
        ny = min(65535, int((y + 0.5) * 65535 / height))
        await stream.pointer_move(nx, ny)
        self._pointer = (x, y)

    @_translated
    async def move_by(self, dx: int, dy: int) -> None:
        """Move the pointer by ``(dx, dy)`` pixels (the agent keeps it on the screen; the
        position this driver answers is its estimate)."""
        stream = await self._desktop()
        await stream.pointer_move_by(dx, dy)
        self._pointer = (self._pointer[0] + dx, self._pointer[1] + dy)

    @_translated
    async def button(self, button: Button, down: bool) -> None:
        stream = await self._desktop()
        await stream.pointer_button(button, down)
        if down:
            self._buttons.add(button)
        else:
            self._buttons.discard(button)

    @_translated
    async def click(self, button: Button = "left", count: int = 1) -> None:
        for _ in range(count):
            await self.button(button, True)
            await self.button(button, False)

    @_translated
    async def scroll(self, delta_x: int, delta_y: int) -> None:
        stream = await self._desktop()
        # Windows wheel units: 120 a notch, positive delta_y away from the user (up).
        await stream.pointer_wheel(delta_x * 120, -delta_y * 120)

    # -- keyboard ----------------------------------------------------------------------------
    @_translated
    async def key(self, key: Key, down: bool) -> None:
        stream = await self._desktop()
        if key.code is None:
            if down and key.char:
                await stream.text(key.char)
            return
        vk = VK_BY_CODE.get(key.code)
        if vk is None:
            raise UnsupportedError(f"the key {key.code} has no Windows virtual-key code")
        await stream.key(vk, down)
        if down and key.code not in self._keys:
            self._keys.append(key.code)
        elif not down and key.code in self._keys:
            self._keys.remove(key.code)

    @_translated
    async def type(self, text: str, delay_s: float = 0.0) -> None:
        stream = await self._desktop()
        if not delay_s:
            await stream.text(text)
            return
        for char in text:
            await stream.text(char)
            await asyncio.sleep(delay_s)

    @_translated
    async def release_all(self) -> None:
        for code in reversed(list(self._keys)):
            await self.key(Key(code=code), False)
        for button in list(self._buttons):
            await self.button(button, False)

    async def held(self) -> Held:
        """What this driver pressed and did not release (Openctrol cannot say more)."""
        return Held(keys=frozenset(self._keys), buttons=frozenset(self._buttons))

    @_translated
    async def desktop_state(self) -> str:
        """What the PC shows, as its agent reports it: ``login_screen``, ``locked``,
        ``desktop`` or ``unknown``."""
        health = await self._client().health()
        remote = health.get("remote_desktop")
        state = remote.get("desktop_state") if isinstance(remote, Folded) else None
        return str(state) if state else "unknown"

    # -- power -------------------------------------------------------------------------------
    @_translated
    async def power_state(self) -> PowerState:
        """An agent that answers runs: on; it can restart and shut down."""
        await self._client().health()
        return PowerState(on=True, actions=["restart", "shutdown"])

    @_translated
    async def power_restart(self) -> None:
        await self._client().power("restart")

    @_translated
    async def power_shutdown(self) -> None:
        await self._client().power("shutdown")

    async def _no_atx(self, what: str) -> None:
        raise UnsupportedError(
            f"an Openctrol agent cannot {what}: it asks the operating system to restart or "
            "shut down; use power_restart or power_shutdown, or a KVM with ATX wiring"
        )

    async def power_on(self) -> None:
        await self._no_atx("turn the machine on")

    async def power_off(self) -> None:
        await self._no_atx("press the power button")

    async def power_off_hard(self) -> None:
        await self._no_atx("cut the power")

    async def power_reset_hard(self) -> None:
        await self._no_atx("pull the reset line")

    async def power_click(self, button: PowerButton) -> None:
        await self._no_atx(f"press the {button} button")

    # -- audio -------------------------------------------------------------------------------
    @_translated
    async def audio_status(self) -> AudioState:
        state = await self._client().audio_state()
        default = str(state.get("default_output_device_id") or "")
        devices = [
            AudioDevice(
                id=str(d["id"]),
                name=str(d.get("name", "")),
                volume=float(d.get("volume", 0)) * 100,
                muted=bool(d.get("muted")),
                default=bool(d.get("is_default")) or str(d["id"]) == default,
            )
            for d in state.get("devices", [])
        ]
        sessions = [
            AudioSession(
                id=str(s["id"]),
                name=str(s.get("name", "")),
                volume=float(s.get("volume", 0)) * 100,
                muted=bool(s.get("muted")),
                device_id=str(s.get("output_device_id") or "") or None,
            )
            for s in state.get("sessions", [])
        ]
        return AudioState(devices=devices, sessions=sessions)

    async def _find(
        self, device_id: str | None, session_id: str | None
    ) -> tuple[AudioDevice | None, AudioSession | None]:
        state = await self.audio_status()
        if session_id is not None:
            session = next((s for s in state.sessions if s.id == session_id), None)
            if session is None:
                raise NotFoundError(f"no audio session {session_id!r}: list them with audio")
            return None, session
        if device_id is None:
            device = next((d for d in state.devices if d.default), None)
            if device is None:
                raise NotFoundError("the PC has no default audio device")
            return device, None
        device = next((d for d in state.devices if d.id == device_id), None)
        if device is None:
            raise NotFoundError(f"no audio device {device_id!r}: list them with audio")
        return device, None

    @_translated
    async def audio_volume(
        self, volume: float, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        await self._audio_set(volume, None, device_id, session_id)

    @_translated
    async def audio_mute(
        self, muted: bool, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        await self._audio_set(None, muted, device_id, session_id)

    async def _audio_set(
        self,
        volume: float | None,
        muted: bool | None,
        device_id: str | None,
        session_id: str | None,
    ) -> None:
        if volume is not None and not 0 <= volume <= 100:
            raise ValidationError(f"an Openctrol volume is 0-100, not {volume:g}")
        device, session = await self._find(device_id, session_id)
        client = self._client()
        if session is not None:
            await client.set_session(
                session.id,
                _fraction(volume, session.volume),
                session.muted if muted is None else muted,
            )
        elif device is not None:
            await client.set_device(
                device.id,
                _fraction(volume, device.volume),
                device.muted if muted is None else muted,
            )

    @_translated
    async def audio_default(self, device_id: str) -> None:
        device, _ = await self._find(device_id, None)
        assert device is not None  # _find answers a device when no session is named
        await self._client().set_default(device.id, device.volume / 100, device.muted)

    @_translated
    async def audio_move(self, session_id: str, device_id: str) -> None:
        await self._find(device_id, None)
        _, session = await self._find(None, session_id)
        assert session is not None  # _find answers a session when one is named
        await self._client().set_session(
            session.id, session.volume / 100, session.muted, output_device_id=device_id
        )


def _fraction(volume: float | None, current: float) -> float:
    return (current if volume is None else volume) / 100


def _decode(data: bytes) -> FrameArray:
    import simplejpeg

    try:
        pixels: FrameArray = simplejpeg.decode_jpeg(data, colorspace="BGRA")
    except ValueError as err:
        raise DeviceError(f"a frame from the Openctrol agent is not a JPEG: {err}") from err
    return np.ascontiguousarray(pixels)
