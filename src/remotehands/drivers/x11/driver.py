"""The x11 driver: glue between the driver contract and the X modules of this package.

One :class:`~remotehands.drivers.x11.display.XThread` owns the driver's X connection and the
mss capture connection; every Xlib call goes there. The clipboard has a connection and a thread
of its own, because it must answer other clients at any time. Programs start and are found
without X at all, and audio goes to the desktop's sound server
(:mod:`remotehands.drivers.pulse`), not through X either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator

from remotehands.drivers.base import Button, Driver, DriverSettings, FrameArray, Held
from remotehands.drivers.logind import session_locked
from remotehands.drivers.pulse import PulseAudio
from remotehands.drivers.x11 import apps
from remotehands.drivers.x11.clipboard import ClipboardService
from remotehands.drivers.x11.desktopstate import read_desktop_state
from remotehands.drivers.x11.display import (
    DEFAULT_TIMEOUT_S,
    XConnection,
    XThread,
    display_name,
    open_display,
)
from remotehands.drivers.x11.input import Input
from remotehands.drivers.x11.power import OsPower, check_commands
from remotehands.drivers.x11.screen import ScreenGrabber
from remotehands.drivers.x11.windows import WindowSystem
from remotehands.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeoutError,
    RemoteHandsError,
    ValidationError,
)
from remotehands.protocol.keys import Key, parse_key
from remotehands.protocol.models import (
    AudioState,
    Bounds,
    PowerButton,
    PowerState,
    ScreenInfo,
    WindowInfo,
)

__all__ = ["X11Driver", "X11Settings"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_TYPE_CHUNK = 256  # characters typed per call on the X thread, so other actions can interleave
RESTORE_IDLE_S = 1.0
"""Borrowed keycodes go back to the keymap once typing has been idle this long: clients look
keysyms up when they process a key event, which may be well after we sent it."""
_WINDOW_SETTLE_S = 1.0  # how long focus and move wait for the window manager to act
_POLL_S = 0.02


class X11Settings(DriverSettings):
    """Settings of the x11 driver (``[devices.settings]`` of a ``driver = "x11"`` device)."""

    display: str | None = Field(None, min_length=1)
    """The X display to drive (``":0"``); unset means ``$DISPLAY``."""
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=600)
    """How long one call to the X server may take."""
    clipboard_timeout_s: float = Field(2.0, gt=0, le=600)
    """How long a clipboard read waits for the owner's answer."""
    audio: Literal["auto", "on", "off"] = "auto"
    """The ``audio`` capability, through the user's PulseAudio (or PipeWire-pulse) server:
    ``auto`` has it when a sound server answers as the driver starts (start the server
    before the agent); ``on`` always has it, and an action while no server runs fails with
    ``service_unavailable`` saying what to start; ``off`` never has it."""
    pulse_server: str | None = Field(None, min_length=1)
    """The sound server's address (``unix:/run/user/1000/pulse/native``); unset: found as every
    PulseAudio client finds it (``$PULSE_SERVER``, else ``$XDG_RUNTIME_DIR/pulse/native``)."""
    logind_bus: str = Field("SYSTEM", min_length=1)
    """The D-Bus whose logind tells whether the display's session is locked (its
    ``LockedHint``): ``SYSTEM``, or a bus address; with no such bus, only the display tells."""
    power_commands: dict[Literal["restart", "shutdown"], str] = Field(default_factory=dict)
    """The commands that restart and shut down this machine (``{"restart": "systemctl
    reboot"}``; ``remotehands agent --power-command restart=CMD``), split as a shell would and
    run without one. An action without a command is a dry run that only logs."""

    @field_validator("power_commands")
    @classmethod
    def _splittable(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            check_commands(value)
        except ConfigError as err:
            raise ValueError(err.details) from err
        return value


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            found = Path(path).read_text().strip()
            if found:
                return found
    return socket.gethostname()


class X11Driver(Driver):
    """Screen, keyboard, pointer, clipboard, windows and apps of an X display, in-process, the
    audio of the user's sound server (:class:`~remotehands.drivers.pulse.PulseAudio`), and the
    machine's OS power (restart, shutdown) by the operator's commands.

    ``display`` is the display to drive (``":0"``); None means ``$DISPLAY``. The cookie comes
    from ``$XAUTHORITY`` (else ``~/.Xauthority``), as for every X client: to drive a
    :class:`~remotehands.agent.desktop.VirtualDesktop`, put its ``env`` into ``os.environ``.
    ``timeout_s`` bounds every call to the X server, ``clipboard_timeout_s`` how long a
    clipboard read waits for the owner's answer.

    Use it from one event loop: :meth:`start` binds a background task (the keymap restorer)
    to the running loop, and :meth:`close` ends it.
    """

    kind = "x11"
    capabilities = frozenset(
        {"screen", "keyboard", "mouse", "clipboard", "windows", "apps", "audio", "power"}
    )
    """Every capability the driver can have; an instance has ``audio`` as its ``audio``
    setting and the sound server decide (see :class:`X11Settings`). ``power`` is the operating
    system's: restart and shutdown (:mod:`~remotehands.drivers.x11.power`)."""
    Settings = X11Settings

    def __init__(
        self,
        display: str | None = None,
        *,
        timeout_s: float | None = None,
        clipboard_timeout_s: float | None = None,
        settings: X11Settings | None = None,
    ) -> None:
        """``display``, ``timeout_s`` and ``clipboard_timeout_s`` are shorthands for the
        fields of ``settings``; give one or the other."""
        shorthand = {"display": display, "timeout_s": timeout_s,
                     "clipboard_timeout_s": clipboard_timeout_s}  # fmt: skip
        given = {k: v for k, v in shorthand.items() if v is not None}
        if settings is None:
            settings = X11Settings.model_validate(given)
        elif given:
            raise TypeError("give X11Driver its settings or their shorthands, not both")
        super().__init__(settings)
        self.settings: X11Settings = settings
        self._requested = settings.display
        self.display: str | None = None
        """The display in use, once started."""
        self._timeout_s = settings.timeout_s
        self._clipboard_timeout_s = settings.clipboard_timeout_s
        self._thread: XThread | None = None
        self._conn: XConnection | None = None
        self._input: Input | None = None
        self._screen: ScreenGrabber | None = None
        self._windows: WindowSystem | None = None
        self._clipboard: ClipboardService | None = None
        self._apps: apps.AppLauncher | None = None
        self._started = False
        self._closed = False
        self._keymap_dirty = asyncio.Event()
        self._janitor: asyncio.Task[None] | None = None
        self._audio = PulseAudio(settings.pulse_server, timeout_s=settings.timeout_s)
        self._power = OsPower(settings.power_commands)
        self._no_audio: str | None = None
        if settings.audio == "off":
            self.capabilities = type(self).capabilities - {"audio"}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the display; :class:`~remotehands.errors.ConfigError` when it is unset
        or unreachable."""
        if self._started:
            return
        if self._closed:
            raise DeviceError("this x11 driver was closed: make a new one")
        name = display_name(self._requested)
        thread = XThread(f"x11{name}", self._timeout_s)
        clipboard = ClipboardService(name, timeout_s=self._clipboard_timeout_s)
        try:
            await thread.call(f"connect to {name}", self._open, name)
            await asyncio.to_thread(clipboard.start)
        except BaseException:
            await asyncio.to_thread(thread.run, self._close_x)
            await asyncio.to_thread(thread.shutdown)
            await asyncio.to_thread(clipboard.close)
            raise
        self._thread = thread
        self._clipboard = clipboard
        self.display = name
        env = {key: value for key, value in os.environ.items() if key != "WAYLAND_DISPLAY"}
        env["DISPLAY"] = name
        self._apps = apps.AppLauncher(env)
        self._janitor = asyncio.create_task(
            self._restore_keymap_when_idle(), name=f"x11 keymap restorer {name}"
        )
        if self.settings.audio == "auto" and not await self._audio.available():
            self.capabilities = self.capabilities - {"audio"}
            self._no_audio = (
                f"no sound server answered at {self._audio.where} as the agent started; start "
                'one, then restart the agent (or set the x11 setting audio = "on" to reach it '
                "whenever it runs)"
            )
            log.info("the device on %s has no audio: %s", name, self._no_audio)
        self._started = True

    def _open(self, name: str) -> None:
        conn = XConnection(open_display(name))
        self._conn = conn
        self._input = Input(conn)
        self._screen = ScreenGrabber(name)
        self._windows = WindowSystem(conn)

    def _close_x(self) -> None:
        if self._screen is not None:
            self._screen.close()
        if self._conn is not None:
            self._conn.close()
        self._screen = self._conn = self._input = self._windows = None

    async def close(self) -> None:
        """Release held keys and buttons, stop the clipboard, close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
            self._janitor = None
        thread, self._thread = self._thread, None
        clipboard, self._clipboard = self._clipboard, None
        if thread is not None:
            if self._input is not None:
                # A failure means the server is gone, and nothing is held on it any more.
                with contextlib.suppress(RemoteHandsError):
                    await thread.call("release held input", self._input.release_all)
            await asyncio.to_thread(thread.run, self._close_x)
            await asyncio.to_thread(thread.shutdown)
        if clipboard is not None:
            await asyncio.to_thread(clipboard.close)
        await self._audio.close()

    async def hardware_id(self) -> str:
        """This machine's id and the display: one device per display of a machine (the same
        id agents before 0.2 derived, so their stored credentials still match)."""
        display = self.display or display_name(self._requested)
        machine = await asyncio.to_thread(_machine_id)
        return hashlib.sha256(f"{machine}|x11|{display}".encode()).hexdigest()[:32]

    async def _restore_keymap_when_idle(self) -> None:
        # Owned by the driver: started in start(), cancelled and awaited in close().
        while True:
            await self._keymap_dirty.wait()
            self._keymap_dirty.clear()
            await asyncio.sleep(RESTORE_IDLE_S)
            try:
                done = await self._x(
                    "restore the keymap", self._inp().restore_keymap, RESTORE_IDLE_S
                )
            except RemoteHandsError:
                done = False  # the next action reports the problem; try again after it
            if not done:
                self._keymap_dirty.set()

    async def _x(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the X thread."""
        if self._thread is None:
            raise DeviceError(
                f"{what}: the x11 driver is {'closed' if self._closed else 'not started'}"
            )
        return await self._thread.call(what, fn, *args)

    def _inp(self) -> Input:
        if self._input is None:
            raise DeviceError(self._not_ready())
        return self._input

    def _scr(self) -> ScreenGrabber:
        if self._screen is None:
            raise DeviceError(self._not_ready())
        return self._screen

    def _win(self) -> WindowSystem:
        if self._windows is None:
            raise DeviceError(self._not_ready())
        return self._windows

    def _not_ready(self) -> str:
        return f"the x11 driver is {'closed' if self._closed else 'not started'}"

    # -- desktop state -------------------------------------------------------------------

    async def desktop_state(self) -> str:
        """``login_screen``, ``locked`` or ``desktop``: what the display shows, from a greeter's
        or a locker's window and the input grabs (:mod:`remotehands.drivers.x11.desktopstate`),
        and the session's ``LockedHint`` where logind keeps one
        (:mod:`remotehands.drivers.logind`). The Openctrol face's health reports it."""
        conn = self._conn
        if conn is None:
            raise DeviceError(self._not_ready())
        shown = await self._x("read the desktop state", read_desktop_state, conn)
        if shown == "desktop" and await session_locked(self.display, self.settings.logind_bus):
            return "locked"
        return shown

    # -- screen --------------------------------------------------------------------------

    async def screens(self) -> list[ScreenInfo]:
        """Every screen (RandR monitor), id 0 first, as they are now."""
        return await self._x("list screens", lambda: self._current_screen().screens())

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        """A BGRX frame of a screen or a region of it; a view reused by the next grab."""
        return await self._x(
            "capture the screen", lambda: self._current_screen().grab(screen_id, region)
        )

    def _current_screen(self) -> ScreenGrabber:
        # The grabber reads the screens once; when the desktop's size changed since (a RandR
        # resize, announced by a ConfigureNotify the input connection already listens to), it
        # is made again, so that frames and screen sizes are the new ones.
        grabber, inp = self._scr(), self._inp()
        inp.handle_events()
        if grabber.root_size != inp.root_size and self.display is not None:
            grabber.close()
            self._screen = grabber = ScreenGrabber(self.display)
        return grabber

    async def cursor_position(self) -> tuple[int, int]:
        """Where the pointer is, in virtual-desktop pixels."""
        return await self._x("read the pointer position", self._inp().position)

    # -- pointer -------------------------------------------------------------------------

    async def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)``: here, when the X thread is idle (a motion does not
        wait on the X server), else on the X thread.

        Here, the motion is queued on the connection and written once the caller's step is
        done (:meth:`XThread.soon`): the agent's reply goes out first, and waking the X server
        is off the action's path. It is written before anything else runs on the connection
        and before the agent reads its next request.
        """
        thread, what = self._thread, "move the pointer"
        if thread is not None:
            inp = self._inp()
            if thread.try_here(what, lambda: inp.move_now(x, y)):
                thread.soon(what, inp.flush)
                return
        await self._x(what, self._inp().move, x, y)

    async def button(self, button: Button, down: bool) -> None:
        """Press or release a button where the pointer is."""
        await self._x("press a button", self._inp().button, button, down)

    async def click(self, button: Button = "left", count: int = 1) -> None:
        """Click ``count`` times where the pointer is."""
        await self._x("click", self._inp().click, button, count)

    async def click_at(self, x: int, y: int, button: Button = "left", count: int = 1) -> None:
        """Move to ``(x, y)`` and click ``count`` times there, in one call on the X thread."""
        await self._x("click", self._inp().click, button, count, (x, y))

    async def scroll(self, delta_x: int, delta_y: int) -> None:
        """Scroll where the pointer is; positive ``delta_y`` scrolls down."""
        await self._x("scroll", self._inp().scroll, delta_x, delta_y)

    # -- keyboard ------------------------------------------------------------------------

    async def key(self, key: Key, down: bool) -> None:
        """Press or release one key; a pressed key stays held until released."""
        parsed = parse_key(key)
        try:
            await self._x(f"press the key {parsed}", self._inp().key, parsed, down)
        finally:
            self._keymap_dirty.set()

    async def type(self, text: str, delay_s: float = 0.0) -> None:
        """Type ``text`` verbatim, any Unicode, waiting ``delay_s`` between characters."""
        if not isinstance(text, str):
            raise ValidationError("text to type must be a string")
        if not 0.0 <= delay_s <= 10.0:
            raise ValidationError(f"delay_s {delay_s} is out of range: use 0 to 10 seconds")
        text = text.replace("\r\n", "\n")
        pieces = (
            [text[i : i + _TYPE_CHUNK] for i in range(0, len(text), _TYPE_CHUNK)]
            if delay_s == 0.0
            else list(text)
        )
        try:
            for index, piece in enumerate(pieces):
                if index and delay_s:
                    await asyncio.sleep(delay_s)
                await self._x("type text", self._inp().type_text, piece)
        finally:
            self._keymap_dirty.set()

    async def release_all(self) -> None:
        """Release every key and button this driver holds down."""
        await self._x("release held input", self._inp().release_all)

    async def held(self) -> Held:
        """Keys and buttons the X server has down (pressed by anyone, not only this driver)."""
        keys, buttons = await self._x("read held input", self._inp().down_on_server)
        return Held(keys=frozenset(keys), buttons=frozenset(buttons))

    # -- clipboard -----------------------------------------------------------------------

    def _clip(self) -> ClipboardService:
        if self._clipboard is None:
            raise DeviceError(self._not_ready())
        return self._clipboard

    async def clipboard_get(self) -> str:
        """The clipboard's text; ``""`` when it is empty or holds no text."""
        return await self._await_clipboard("read the clipboard", self._clip().get_text())

    async def clipboard_set(self, text: str) -> None:
        """Own the clipboard with ``text``."""
        if not isinstance(text, str):
            raise ValidationError("clipboard text must be a string")
        await self._await_clipboard("set the clipboard", self._clip().set_text(text))

    async def _await_clipboard(self, what: str, future: concurrent.futures.Future[T]) -> T:
        limit = self._clipboard_timeout_s + self._timeout_s
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except TimeoutError as err:
            raise DeviceTimeoutError(f"{what}: no answer within {limit:g} s") from err

    # -- windows -------------------------------------------------------------------------

    async def windows(self) -> list[WindowInfo]:
        """Every managed top-level window, bottom of the stack first."""
        return await self._x("list windows", self._win().list_windows)

    async def focus_window(self, window_id: int) -> None:
        """Raise and focus a window; NotFoundError if it is not a top-level window."""
        await self._x("focus a window", self._win().request_focus, window_id)
        if await self._wait_active(window_id):
            return
        # The window manager did not act (or there is none): focus it ourselves.
        await self._x("focus a window", self._win().force_focus, window_id)

    async def _wait_active(self, window_id: int) -> bool:
        deadline = time.monotonic() + _WINDOW_SETTLE_S
        while True:
            active = await self._x("read the active window", self._win().active_id)
            if active == window_id:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)

    async def move_window(self, window_id: int, bounds: Bounds) -> Bounds:
        """Move and resize a window (outer bounds, frame included); answers what it got."""
        before = await self._x("read window bounds", self._win().bounds, window_id)
        if before == bounds:
            return before
        await self._x("move a window", self._win().request_move, window_id, bounds)
        # The window manager applies the request when it gets to it, and may adjust it
        # (size increments, minimum sizes): wait for the target, or for a change that holds.
        deadline = time.monotonic() + _WINDOW_SETTLE_S
        last, steady = before, 0
        while True:
            current = await self._x("read window bounds", self._win().bounds, window_id)
            if current == bounds:
                return current
            steady = steady + 1 if current == last and current != before else 0
            if steady >= 3 or time.monotonic() >= deadline:
                return current
            last = current
            await asyncio.sleep(_POLL_S)

    async def close_window(self, window_id: int) -> None:
        """Ask a window to close, as its close button would."""
        await self._x("close a window", self._win().request_close, window_id)

    # -- apps ----------------------------------------------------------------------------

    async def open_app(self, path: str, args: Sequence[str]) -> int:
        """Start a program detached from the agent, on this display; answers its pid."""
        if self._apps is None:
            raise DeviceError("open an app: the x11 driver is not started")
        launcher = self._apps
        return await self._in_thread(f"open {path}", launcher.open, path, list(args))

    async def app_running(self, name: str) -> list[int]:
        """Pids of processes whose executable name is ``name``."""
        return await self._in_thread("list running programs", apps.running, name)

    async def _in_thread(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        # Process work needs no X: a worker thread of the loop's pool, not the X thread.
        try:
            async with asyncio.timeout(self._timeout_s):
                return await asyncio.to_thread(fn, *args)
        except TimeoutError as err:
            raise DeviceTimeoutError(f"{what}: no result within {self._timeout_s:g} s") from err

    def lacks_because(self, capability: str) -> str | None:
        """Why there is no audio (no sound server as the driver started), or None."""
        return self._no_audio if capability == "audio" else None

    # -- audio ---------------------------------------------------------------------------

    async def audio_status(self) -> AudioState:
        """The sound server's output devices and sessions, read now."""
        return await self._audio.audio_status()

    async def audio_volume(
        self, volume: float, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Set the volume (percent) of a session, a device or the default device."""
        await self._audio.audio_volume(volume, device_id, session_id)

    async def audio_mute(
        self, muted: bool, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Mute or unmute a session, a device or the default device."""
        await self._audio.audio_mute(muted, device_id, session_id)

    async def audio_default(self, device_id: str) -> None:
        """Make ``device_id`` the default output device."""
        await self._audio.audio_default(device_id)

    async def audio_move(self, session_id: str, device_id: str) -> None:
        """Route a session to another output device."""
        await self._audio.audio_move(session_id, device_id)

    # -- power: the operating system's own ------------------------------------------------

    async def power_state(self) -> PowerState:
        """On, with restart and shutdown (``dry_run`` when a command is missing)."""
        return self._power.state()

    async def power_restart(self) -> None:
        """Run the configured restart command (a logged dry run without one)."""
        await self._power.run("restart")

    async def power_shutdown(self) -> None:
        """Run the configured shutdown command (a logged dry run without one)."""
        await self._power.run("shutdown")

    async def power_on(self) -> None:
        """Unsupported: a machine that is off runs no agent."""
        raise self._power.unsupported("power on")

    async def power_off(self) -> None:
        """Unsupported: that is the ATX button's; use power_shutdown."""
        raise self._power.unsupported("press the power button")

    async def power_off_hard(self) -> None:
        """Unsupported: a long press needs a KVM."""
        raise self._power.unsupported("hold the power button (hard power off)")

    async def power_reset_hard(self) -> None:
        """Unsupported: the reset line needs a KVM."""
        raise self._power.unsupported("pull the reset line")

    async def power_click(self, button: PowerButton) -> None:
        """Unsupported: front-panel buttons need a KVM."""
        raise self._power.unsupported(f"press the {button} button")
