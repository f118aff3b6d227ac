"""The tinypilot driver: glue between the driver contract and :mod:`.client`.

A TinyPilot sees the target machine's screen (JPEG screenshots) and is its USB keyboard and
absolute mouse. What its API lacks the driver keeps itself: the pointer's position and the
buttons held (every mouse event carries both), the screen's size (from the last screenshot,
so pixels map to TinyPilot's 0.0-1.0 coordinates), and the modifiers held (TinyPilot presses a
key with its modifiers and releases everything right after, so a held modifier rides along the
next keystroke; one pressed and released alone is sent as a tap of that key). Text is typed
key by key for the target's layout (``layout``: en-US, en-GB or de-DE), which is how the
characters land right on the target whatever its language.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import simplejpeg
from PIL import Image

from remotehands.drivers.base import Button, Driver, EncodedFrame, FrameArray, Held
from remotehands.drivers.remote import RemoteSettings
from remotehands.drivers.tinypilot import client as tp
from remotehands.drivers.tinypilot.client import TinyPilotClient
from remotehands.drivers.tinypilot.layouts import Layout, Stroke, strokes
from remotehands.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeoutError,
    RemoteHandsError,
    ValidationError,
)
from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds, ScreenInfo

__all__ = ["TinyPilotDriver", "TinyPilotSettings"]

log = logging.getLogger(__name__)

_BUTTON_BITS: dict[Button, int] = {"left": 1, "right": 2, "middle": 4}
_MODIFIER_FLAGS: dict[str, str] = {
    "ShiftLeft": "shiftLeft", "ShiftRight": "shiftRight", "ControlLeft": "ctrlLeft",
    "ControlRight": "ctrlRight", "AltLeft": "altLeft", "AltRight": "altRight",
    "MetaLeft": "metaLeft", "MetaRight": "metaRight",
}  # fmt: skip
MAX_SCROLL = 100
"""Wheel notches one scroll may ask for (TinyPilot takes one notch per event)."""


class TinyPilotSettings(RemoteSettings):
    """Settings of the tinypilot driver (``[devices.settings]`` of a ``driver = "tinypilot"``
    device). ``password_env``/``password_file`` hold a static API key (TinyPilot Pro's
    automation keys); without one, the driver fetches tokens from ``/api/v1/auth``."""

    layout: Layout = "en-US"
    """The keyboard layout of the target machine's operating system, for typing text."""


class TinyPilotDriver(Driver):
    """A machine behind a TinyPilot KVM: its screen, keyboard and mouse."""

    kind = "tinypilot"
    device_type: ClassVar[str] = "tinypilot"
    capabilities = frozenset({"screen", "keyboard", "mouse"})
    Settings = TinyPilotSettings

    def __init__(self, settings: TinyPilotSettings | None = None) -> None:
        if settings is None:
            raise ConfigError("the tinypilot driver needs settings: at least its url")
        super().__init__(settings)
        self.tp_settings = settings
        self.client: TinyPilotClient | None = None
        self._size: tuple[int, int] | None = None
        self._position = (0, 0)
        self._buttons = 0
        self._modifiers: dict[str, bool] = {}
        """Modifiers held, each with whether a key was pressed with it since it went down."""

    async def start(self) -> None:
        """Reach the device and check the credential: a token fetched, or the key tried on a
        screenshot (which also gives the screen's size; no video signal is no failure)."""
        s = self.tp_settings
        verify = s.ca_file if s.ca_file is not None else s.verify_tls
        client = TinyPilotClient(s.url, key=s.password(), verify=verify, timeout_s=s.timeout_s)
        await client.open()
        self.client = client
        try:
            if client.key is None:
                with _device_errors():
                    await client.authenticate()
            await self._screenshot()
        except DeviceError as err:
            if tp.NO_SIGNAL not in err.details:
                await self.close()
                raise
            log.warning("%s", err.details)
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> TinyPilotDriver:
        await self.start()
        return self

    async def close(self) -> None:
        """Release what is held and close the connection; safe to call twice."""
        if self.client is None:
            return
        try:
            await self.release_all()
        except RemoteHandsError as err:
            log.warning("could not release the keys and buttons on %s: %s", self.tp_settings.url,
                        err.details)  # fmt: skip
        finally:
            client, self.client = self.client, None
            await client.aclose()

    async def check(self) -> None:
        """A screenshot: it fails when the device is unreachable, refuses the credential or
        sees no video signal."""
        await self._screenshot()

    async def hardware_id(self) -> str:
        """TinyPilot's API names no serial: the device is where its URL points."""
        digest = hashlib.sha256(f"tinypilot|{self.tp_settings.url}".encode())
        return digest.hexdigest()[:32]

    def _client(self) -> TinyPilotClient:
        if self.client is None:
            raise DeviceError(
                f"the tinypilot driver for {self.tp_settings.url} is not started: the device "
                "was not reached yet"
            )
        return self.client

    # -- screen -----------------------------------------------------------------------------
    async def _screenshot(self) -> bytes:
        with _device_errors():
            data = await self._client().screenshot()
        self._size = await asyncio.to_thread(_jpeg_size, data)
        return data

    async def _screen_size(self) -> tuple[int, int]:
        if self._size is None:
            await self._screenshot()
        assert self._size is not None
        return self._size

    async def screens(self) -> list[ScreenInfo]:
        """The one screen of the target, as big as its last screenshot."""
        width, height = await self._screen_size()
        return [ScreenInfo(id=0, width=width, height=height)]

    async def snapshot(self, screen_id: int = 0) -> EncodedFrame | None:
        """The device's own JPEG, passed on as it is."""
        _check_screen(screen_id)
        data = await self._screenshot()
        assert self._size is not None
        return EncodedFrame(data=data, format="jpeg", width=self._size[0], height=self._size[1])

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        """The screen decoded to BGRX, or ``region`` of it."""
        _check_screen(screen_id)
        data = await self._screenshot()
        frame = await asyncio.to_thread(_decode, data)
        if region is None:
            return frame
        height, width = frame.shape[0], frame.shape[1]
        inside = region.x >= 0 and region.y >= 0 and region.width > 0 and region.height > 0
        if not inside or region.x + region.width > width or region.y + region.height > height:
            raise ValidationError(
                f"region {region.width}x{region.height}+{region.x}+{region.y} is not inside the "
                f"{width}x{height} screen"
            )
        return frame[region.y : region.y + region.height, region.x : region.x + region.width]

    async def cursor_position(self) -> tuple[int, int]:
        """Where this driver last put the pointer (a TinyPilot cannot tell)."""
        return self._position

    # -- mouse ------------------------------------------------------------------------------
    async def _mouse(self, vertical: int = 0, horizontal: int = 0) -> None:
        width, height = await self._screen_size()
        x, y = self._position
        # pixel 0 is 0.0 and the last pixel 1.0: what the TinyPilot face maps back exactly
        rx = x / (width - 1) if width > 1 else 0.0
        ry = y / (height - 1) if height > 1 else 0.0
        with _device_errors():
            await self._client().mouse_event(self._buttons, rx, ry, vertical, horizontal)

    async def move(self, x: int, y: int) -> None:
        """Put the pointer on pixel ``(x, y)``."""
        width, height = await self._screen_size()
        if not (0 <= x < width and 0 <= y < height):
            raise ValidationError(
                f"({x}, {y}) is off the screen: it is {width}x{height}, so use 0 <= x < {width} "
                f"and 0 <= y < {height}"
            )
        self._position = (x, y)
        await self._mouse()

    async def button(self, button: Button, down: bool) -> None:
        """Press or release a button where the pointer is."""
        bit = _button_bit(button)
        self._buttons = self._buttons | bit if down else self._buttons & ~bit
        await self._mouse()

    async def click(self, button: Button = "left", count: int = 1) -> None:
        """Press and release ``count`` times where the pointer is."""
        if not 1 <= count <= 10:
            raise ValidationError(f"click count {count} is out of range: use 1 to 10")
        for _ in range(count):
            await self.button(button, True)
            await self.button(button, False)

    async def scroll(self, delta_x: int, delta_y: int) -> None:
        """Turn the wheels one notch per event (positive: down, right)."""
        if abs(delta_x) > MAX_SCROLL or abs(delta_y) > MAX_SCROLL:
            raise ValidationError(f"scroll at most {MAX_SCROLL} notches at a time")
        for step in range(max(abs(delta_x), abs(delta_y))):
            vertical = _sign(delta_y) if step < abs(delta_y) else 0
            horizontal = _sign(delta_x) if step < abs(delta_x) else 0
            await self._mouse(vertical, horizontal)

    # -- keyboard ---------------------------------------------------------------------------
    async def _stroke(self, code: str, extra: dict[str, bool] | None = None) -> None:
        flags = {_MODIFIER_FLAGS[m]: True for m in self._modifiers}
        flags.update(extra or {})
        for modifier in self._modifiers:
            self._modifiers[modifier] = True
        with _device_errors():
            await self._client().keystroke(code, **flags)

    async def key(self, key: Key, down: bool) -> None:
        """Press or release a key. A modifier is held by this driver and sent with the next
        keystrokes; any other key is pressed and released on its down (TinyPilot's API has
        no separate release)."""
        code = key.code
        extra: dict[str, bool] = {}
        if code is None:
            assert key.char is not None
            stroke = _stroke_for(key.char, self.tp_settings.layout)
            code, extra = stroke.code, _flags(stroke)
        if code in _MODIFIER_FLAGS:
            if down:
                self._modifiers.setdefault(code, False)
            elif code in self._modifiers and not self._modifiers.pop(code):
                # pressed and released alone (a tap of Shift, or of Meta to open a menu)
                with _device_errors():
                    await self._client().keystroke(code)
            return
        if down:
            await self._stroke(code, extra)

    async def type(self, text: str, delay_s: float = 0.0) -> None:
        """Type ``text`` key by key for the target's layout; every character is checked before
        the first is typed."""
        for index, stroke in enumerate(strokes(text, self.tp_settings.layout)):
            if index and delay_s:
                await asyncio.sleep(delay_s)
            with _device_errors():
                await self._client().keystroke(stroke.code, **_flags(stroke))

    async def release_all(self) -> None:
        """Forget held modifiers and release held buttons."""
        self._modifiers.clear()
        if self._buttons:
            self._buttons = 0
            await self._mouse()

    async def held(self) -> Held:
        """The modifiers and buttons this driver holds."""
        buttons = frozenset(b for b, bit in _BUTTON_BITS.items() if self._buttons & bit)
        return Held(keys=frozenset(self._modifiers), buttons=buttons)


@contextlib.contextmanager
def _device_errors() -> Iterator[None]:
    """The client's errors as ours, with the device's own words. A refused credential is the
    device's failure (``device_error``), not the caller's: the caller's own credential was
    fine."""
    try:
        yield
    except tp.Timeout as err:
        raise DeviceTimeoutError(err.message) from err
    except tp.BadRequest as err:
        raise ValidationError(err.message) from err
    except tp.TinyPilotError as err:
        raise DeviceError(err.message) from err


def _check_screen(screen_id: int) -> None:
    if screen_id != 0:
        raise ValidationError(f"no screen {screen_id}: a TinyPilot has one screen, 0")


def _button_bit(button: str) -> int:
    for name, bit in _BUTTON_BITS.items():
        if name == button:
            return bit
    raise ValidationError(f"unknown button {button!r}: use one of {', '.join(_BUTTON_BITS)}")


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _flags(stroke: Stroke) -> dict[str, bool]:
    return {k: v for k, v in stroke.keystroke().items() if isinstance(v, bool)}


def _stroke_for(char: str, layout: str) -> Stroke:
    found = strokes(char, layout)
    if len(found) != 1:
        raise ValidationError(f"the character {char!r} is no key of the {layout} layout")
    return found[0]


def _jpeg_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.width), int(image.height)
    except (OSError, ValueError) as err:
        raise DeviceError(f"the TinyPilot's screenshot is not an image: {err}") from err


def _decode(data: bytes) -> FrameArray:
    try:
        frame = simplejpeg.decode_jpeg(data, colorspace="BGRX")
    except ValueError as err:
        raise DeviceError(f"the TinyPilot's screenshot is not a JPEG: {err}") from err
    return np.ascontiguousarray(frame)
