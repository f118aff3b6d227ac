"""What every action handler of one device works with: its driver, seen through the capability
Protocols, and the state the agent keeps above it (locks, frame ids, clipboard slots, the log).

One :class:`ActionContext` per device, made and owned by its
:class:`~remotehands.agent.dispatch.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from typing import cast

import httpx

from remotehands.agent.actionlog import ActionLog
from remotehands.agent.frames import FrameIds
from remotehands.agent.framesource import FrameSources
from remotehands.agent.slots import ClipboardSlots
from remotehands.drivers.base import (
    Apps,
    Audio,
    Clipboard,
    Driver,
    Keyboard,
    Mouse,
    PointedMouse,
    Screen,
    Windows,
)
from remotehands.errors import BusyError, NotFoundError, UnsupportedError
from remotehands.protocol.actions import ActionSpec
from remotehands.protocol.keys import Key
from remotehands.protocol.models import WindowInfo

__all__ = ["REDRAWING_CAPABILITIES", "ActionContext"]

REDRAWING_CAPABILITIES = frozenset({"mouse", "keyboard", "windows", "apps", "ocr", "act"})
"""The capabilities whose control actions are input that may redraw the screen at once: after
one, the device's watched screens capture without waiting for their next tick. (Clipboard,
audio and the power, media and switch actions of a KVM draw nothing soon enough to catch.)"""


class ActionContext:
    """The device an action runs on, as its handlers see it."""

    def __init__(
        self,
        driver: Driver,
        *,
        http: httpx.AsyncClient | None = None,
        provided: Mapping[str, str | None] | None = None,
        frame_sources: FrameSources | None = None,
    ) -> None:
        self.driver = driver
        self.frame_sources = frame_sources
        """The device's live frames (one source per screen); None without a screen."""
        self.provided: Mapping[str, str | None] = provided or {}
        """The capabilities the agent provides above the driver (OCR, act) and the driver
        capability each needs (``None``: none)."""
        self.log = ActionLog()
        self.lock = asyncio.Lock()
        """The device lock: held by each control action and for a whole sequence."""
        self.screen_lock = asyncio.Lock()
        """Held around a grab: a driver may reuse the frame's buffer on the next one."""
        self.frames = FrameIds()
        self.slots = ClipboardSlots()
        self._http = http

    # -- capability views: the handler's action was checked against the capability first ----
    @property
    def screen(self) -> Screen:
        """The driver as a :class:`~remotehands.drivers.base.Screen`."""
        return cast(Screen, self.driver)

    @property
    def mouse(self) -> Mouse:
        """The driver as a :class:`~remotehands.drivers.base.Mouse`."""
        return cast(Mouse, self.driver)

    @property
    def keyboard(self) -> Keyboard:
        """The driver as a :class:`~remotehands.drivers.base.Keyboard`."""
        return cast(Keyboard, self.driver)

    @property
    def clipboard(self) -> Clipboard:
        """The driver as a :class:`~remotehands.drivers.base.Clipboard`."""
        return cast(Clipboard, self.driver)

    @property
    def windows(self) -> Windows:
        """The driver as a :class:`~remotehands.drivers.base.Windows`."""
        return cast(Windows, self.driver)

    @property
    def apps(self) -> Apps:
        """The driver as a :class:`~remotehands.drivers.base.Apps`."""
        return cast(Apps, self.driver)

    @property
    def audio(self) -> Audio:
        """The driver as an :class:`~remotehands.drivers.base.Audio`."""
        return cast(Audio, self.driver)

    def check(self, spec: ActionSpec) -> None:
        """Raise :class:`UnsupportedError` unless the device has the action's capability."""
        capability = spec.capability
        if capability is not None and capability in self.provided:
            capability = self.provided[capability]
        if capability is not None and not self.driver.has(capability):
            why = self.driver.lacks_because(capability)
            raise UnsupportedError(
                f"this device ({self.driver.kind}) has no {spec.capability} capability, so it "
                f"cannot do {spec.name}"
                + (f": {why}" if why else "")
                + f"; it has: {', '.join(sorted(self.driver.capabilities))}"
            )

    def input_done(self, spec: ActionSpec) -> None:
        """``spec`` was just carried out (or failed part way): when it is input that may
        redraw the screen, the watched screens capture now rather than at their next tick."""
        if self.frame_sources is None or spec.access != "control":
            return
        if spec.capability in REDRAWING_CAPABILITIES or spec.name == "sequence":
            self.frame_sources.kick()

    @functools.cached_property
    def pointed_mouse(self) -> PointedMouse | None:
        """The driver as a :class:`~remotehands.drivers.base.PointedMouse` (moves and clicks in
        one call), or None. Asked once: a runtime protocol check costs tens of microseconds on
        Python 3.11, more than the rest of a click's dispatch."""
        return self.driver if isinstance(self.driver, PointedMouse) else None

    @contextlib.asynccontextmanager
    async def locked(self, timeout_ms: int) -> AsyncIterator[None]:
        """Hold the device lock; :class:`BusyError` when it is not free within the timeout."""
        try:
            if self.lock.locked():  # a free lock is taken at once, without a deadline to set
                async with asyncio.timeout(timeout_ms / 1000):
                    await self.lock.acquire()
            else:
                await self.lock.acquire()
        except TimeoutError:
            raise BusyError(
                f"the device is busy with another sequence for more than {timeout_ms} ms; "
                "retry later or raise lock_timeout_ms"
            ) from None
        try:
            yield
        finally:
            self.lock.release()

    def http(self) -> httpx.AsyncClient:
        """The HTTP client for screenshot uploads, made on first use."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client, if there is one."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def press_combo(self, keys: list[Key], hold_s: float = 0.0) -> None:
        """Press keys in order, hold, release in reverse; never leaves one held on failure."""
        pressed: list[Key] = []
        try:
            for key in keys:
                await self.keyboard.key(key, True)
                pressed.append(key)
            if hold_s:
                await asyncio.sleep(hold_s)
        finally:
            for key in reversed(pressed):
                await self.keyboard.key(key, False)

    async def find_window(self, window_id: int) -> WindowInfo:
        """The window ``window_id``; :class:`NotFoundError` when there is none."""
        for window in await self.windows.windows():
            if window.id == window_id:
                return window
        raise NotFoundError(f"no window {window_id} ({window_id:#x}): list windows for valid ids")
