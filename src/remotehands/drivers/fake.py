"""FakeDriver: a whole device in memory, for tests, demos and benchmarks.

It has every desktop capability, audio (:mod:`~remotehands.drivers.fakeaudio`: two output
devices and a playing application), and power, virtual media and a KVM switch with real state
(the mixins of :mod:`remotehands.drivers.fakekvm`). Its screen is a real BGRX framebuffer that tests
draw into (:meth:`FakeDriver.fill`) and that input marks visibly: a click paints a small square
where it happened, so a screenshot shows it. Every call is recorded in
:attr:`FakeDriver.calls`, and the state a test wants to check (held keys and buttons, typed
text, clipboard, open windows) is public. The open windows are ``open_windows``: ``windows`` is
the Protocol method that lists them.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from remotehands.drivers.base import Button, Driver, DriverSettings, FrameArray, Held
from remotehands.drivers.fakeaudio import FakeAudio
from remotehands.drivers.fakekvm import (
    KVM_CAPABILITIES,
    FakeKvmSettings,
    FakeMedia,
    FakePower,
    FakeSwitch,
)
from remotehands.errors import DeviceError, NotFoundError, ValidationError
from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds, ScreenInfo, WindowInfo

__all__ = ["FakeDesktopSettings", "FakeDriver", "FakeSettings", "FakeWindow"]

_CLICK_COLOURS: dict[str, tuple[int, int, int]] = {
    "left": (0, 0, 255),  # BGR: red
    "right": (0, 255, 0),
    "middle": (255, 0, 0),
}


_DESKTOP = frozenset({"screen", "keyboard", "mouse", "clipboard", "windows", "apps", "audio"})
_ALL = _DESKTOP | KVM_CAPABILITIES


class FakeDesktopSettings(DriverSettings):
    """The settings of the fake desktop (see :class:`FakeSettings`)."""

    width: int = Field(1280, ge=1, le=16384)
    """Screen width in pixels."""
    height: int = Field(800, ge=1, le=16384)
    """Screen height in pixels."""
    serial: str | None = Field(None, min_length=1, max_length=128)
    """The device's hardware id; by default one derived from these settings."""
    fail_start: str | None = None
    """When set, :meth:`FakeDriver.start` fails with this reason: rehearses a device that
    cannot start (a KVM that does not answer)."""
    capabilities: frozenset[str] | None = None
    """Fewer capabilities than all of them, to play a device that lacks some (a KVM has no
    clipboard, windows or apps: ``["screen", "keyboard", "mouse", "power", "media"]``); unset:
    all of them."""

    @field_validator("capabilities")
    @classmethod
    def _known(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is not None and not value <= _ALL:
            raise ValueError(f"the fake driver has only {', '.join(sorted(_ALL))}")
        return value


class FakeSettings(FakeKvmSettings, FakeDesktopSettings):
    """Settings of the fake driver (``[devices.settings]`` of a ``driver = "fake"`` device): the
    desktop's, then those of its power, media and switch (:class:`FakeKvmSettings`)."""


@dataclass
class FakeWindow:
    """A window of the fake desktop."""

    id: int
    title: str
    bounds: Bounds
    pid: int = 4242
    process_name: str = "fakeapp"
    is_dialog: bool = False


@dataclass
class _Call:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


class FakeDriver(FakeAudio, FakePower, FakeMedia, FakeSwitch, Driver):
    """An in-memory device with screen, keyboard, pointer, clipboard, windows, apps and audio,
    power, virtual media and a KVM switch."""

    kind = "fake"
    capabilities = _ALL
    Settings = FakeSettings

    def __init__(
        self, width: int | None = None, height: int | None = None, *,
        settings: FakeSettings | None = None,
    ) -> None:  # fmt: skip
        """``FakeDriver(640, 480)`` is a shorthand for ``settings=FakeSettings(width=640,
        height=480)``."""
        if settings is None:
            size = {"width": width, "height": height}
            settings = FakeSettings.model_validate({k: v for k, v in size.items() if v})
        elif width is not None or height is not None:
            raise TypeError("give FakeDriver a size or settings, not both")
        super().__init__(settings)
        self.settings: FakeSettings = settings
        self.width = settings.width
        self.height = settings.height
        if settings.capabilities is not None:
            self.capabilities = settings.capabilities
        self.framebuffer: FrameArray = np.zeros((self.height, self.width, 4), dtype=np.uint8)
        self.framebuffer[..., 3] = 255
        self.calls: list[_Call] = []
        self.pointer = (0, 0)
        self.buttons_down: set[Button] = set()
        self.keys_down: list[Key] = []
        self.typed: list[str] = []
        self.pressed: list[Key] = []
        self.clipboard = ""
        self.open_windows: list[FakeWindow] = []
        self.focused: int | None = None
        self.processes: dict[int, str] = {}
        self._pids = itertools.count(10_000)
        self.closed = False

    async def start(self) -> None:
        """Nothing to open; fails as told by the ``fail_start`` setting."""
        if self.settings.fail_start is not None:
            raise DeviceError(f"the fake device refused to start: {self.settings.fail_start}")

    async def hardware_id(self) -> str:
        """The ``serial`` setting, else an id derived from the settings."""
        return self.settings.serial or await super().hardware_id()

    # -- helpers for tests -------------------------------------------------------------------
    def fill(self, bgr: tuple[int, int, int], bounds: Bounds | None = None) -> None:
        """Paint a rectangle (the whole screen by default) in a BGR colour."""
        b = bounds or Bounds(x=0, y=0, width=self.width, height=self.height)
        self.framebuffer[b.y : b.y + b.height, b.x : b.x + b.width, :3] = bgr

    def add_window(self, title: str, bounds: Bounds, *, is_dialog: bool = False) -> FakeWindow:
        """Open a window and focus it."""
        window = FakeWindow(id=0x400001 + len(self.open_windows), title=title,
                            bounds=bounds, is_dialog=is_dialog)  # fmt: skip
        self.open_windows.append(window)
        self.focused = window.id
        return window

    def call_names(self) -> list[str]:
        """The names of the calls made so far, in order."""
        return [c.name for c in self.calls]

    def _record(self, name: str, **args: Any) -> None:
        self.calls.append(_Call(name, args))

    def resize(self, width: int, height: int) -> None:
        """Change the screen's resolution, as a desktop's display settings or a KVM's target
        booting into another mode do: the screen is black again, the pointer stays if it fits."""
        self.width, self.height = width, height
        self.framebuffer = np.zeros((height, width, 4), dtype=np.uint8)
        self.framebuffer[..., 3] = 255
        self.pointer = (min(self.pointer[0], width - 1), min(self.pointer[1], height - 1))

    def _check_point(self, x: int, y: int) -> None:
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise ValidationError(
                f"({x}, {y}) is off the screen: it is {self.width}x{self.height}, "
                f"x in 0..{self.width - 1} and y in 0..{self.height - 1}"
            )

    def _window(self, window_id: int) -> FakeWindow:
        for window in self.open_windows:
            if window.id == window_id:
                return window
        raise NotFoundError(f"no window {window_id:#x}: list the windows to get a valid id")

    # -- screen ------------------------------------------------------------------------------
    async def screens(self) -> list[ScreenInfo]:
        return [ScreenInfo(id=0, width=self.width, height=self.height)]

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        self._record("grab", screen_id=screen_id, region=region)
        if screen_id != 0:
            raise NotFoundError(f"no screen {screen_id}: this device has screen 0 only")
        if region is None:
            return self.framebuffer
        if region.x + region.width > self.width or region.y + region.height > self.height:
            raise ValidationError(
                f"region {region.x},{region.y} {region.width}x{region.height} leaves the "
                f"{self.width}x{self.height} screen"
            )
        return self.framebuffer[region.y : region.y + region.height,
                                region.x : region.x + region.width]  # fmt: skip

    async def cursor_position(self) -> tuple[int, int]:
        return self.pointer

    # -- pointer -----------------------------------------------------------------------------
    async def move(self, x: int, y: int) -> None:
        self._check_point(x, y)
        self._record("move", x=x, y=y)
        self.pointer = (x, y)

    async def button(self, button: Button, down: bool) -> None:
        self._record("button", button=button, down=down)
        if down:
            self.buttons_down.add(button)
        else:
            self.buttons_down.discard(button)

    async def click(self, button: Button = "left", count: int = 1) -> None:
        self._record("click", button=button, count=count, at=self.pointer)
        x, y = self.pointer
        self.framebuffer[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3, :3] = _CLICK_COLOURS[button]

    async def scroll(self, delta_x: int, delta_y: int) -> None:
        self._record("scroll", delta_x=delta_x, delta_y=delta_y, at=self.pointer)

    # -- keyboard ----------------------------------------------------------------------------
    async def key(self, key: Key, down: bool) -> None:
        self._record("key", key=key, down=down)
        if down:
            if key not in self.keys_down:
                self.keys_down.append(key)
            self.pressed.append(key)
        elif key in self.keys_down:
            self.keys_down.remove(key)

    async def type(self, text: str, delay_s: float = 0.0) -> None:
        self._record("type", text=text, delay_s=delay_s)
        self.typed.append(text)

    async def release_all(self) -> None:
        self._record("release_all")
        self.keys_down.clear()
        self.buttons_down.clear()

    async def held(self) -> Held:
        keys = frozenset(k.code or f"char {k.char}" for k in self.keys_down)
        return Held(keys=keys, buttons=frozenset(self.buttons_down))

    # -- clipboard ---------------------------------------------------------------------------
    async def clipboard_get(self) -> str:
        return self.clipboard

    async def clipboard_set(self, text: str) -> None:
        self._record("clipboard_set", text=text)
        self.clipboard = text

    # -- windows -----------------------------------------------------------------------------
    async def windows(self) -> list[WindowInfo]:
        return [
            WindowInfo(id=w.id, title=w.title, process_name=w.process_name, pid=w.pid,
                       bounds=w.bounds, is_focused=w.id == self.focused, is_dialog=w.is_dialog)
            for w in self.open_windows
        ]  # fmt: skip

    async def focus_window(self, window_id: int) -> None:
        self._window(window_id)
        self._record("focus_window", window_id=window_id)
        self.focused = window_id

    async def move_window(self, window_id: int, bounds: Bounds) -> Bounds:
        window = self._window(window_id)
        self._record("move_window", window_id=window_id, bounds=bounds)
        window.bounds = bounds
        return bounds

    async def close_window(self, window_id: int) -> None:
        window = self._window(window_id)
        self._record("close_window", window_id=window_id)
        self.open_windows.remove(window)
        if self.focused == window_id:
            self.focused = self.open_windows[-1].id if self.open_windows else None

    # -- apps --------------------------------------------------------------------------------
    async def open_app(self, path: str, args: Sequence[str]) -> int:
        self._record("open_app", path=path, args=list(args))
        if shutil.which(path) is None:
            raise NotFoundError(f"no program {path!r}: give an absolute path or a name on PATH")
        pid = next(self._pids)
        self.processes[pid] = path.rsplit("/", 1)[-1]
        return pid

    async def app_running(self, name: str) -> list[int]:
        return sorted(pid for pid, proc in self.processes.items() if proc == name)

    async def close(self) -> None:
        self.closed = True
        self.power_led.cancel()
        self.keys_down.clear()
        self.buttons_down.clear()
