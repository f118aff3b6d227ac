"""The driver contract: a :class:`Driver` base class and one Protocol per capability.

A driver fronts one device. It declares the capabilities it has in ``capabilities``; the agent
checks that set before it calls a method, so an action outside it fails with ``unsupported``
before it reaches the device. Every method is a coroutine: drivers that talk to blocking
libraries (Xlib, mss) run them on a thread of their own.

A driver names its settings model in ``Settings`` (a :class:`DriverSettings`, pydantic) and takes
an instance of it as the keyword ``settings``, so that the agent builds any driver from its name
and a mapping of settings (:meth:`Driver.from_settings`) with no special case per driver. The
capabilities a driver class declares are checked against the Protocols it implements when the
class is defined (:data:`CAPABILITY_PROTOCOLS`): a declared capability whose methods are
missing is a ``TypeError`` at import, never an ``AttributeError`` in the middle of an action.

Drivers only translate. Imaging (encoding, scaling, stability), clipboard slots, sequences and
locks live in the agent, above the driver, so that every driver gets them the same way.

Raw frames are ``numpy`` arrays of shape ``(height, width, 4)``, ``uint8``, in BGRX order (the
order X servers and mss hand out), so they can be encoded without a conversion.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import pydantic

from remotehands.errors import ConfigError
from remotehands.protocol.keys import Key
from remotehands.protocol.models import (
    AudioState,
    Bounds,
    Button,
    ImageFormat,
    MediaDrive,
    MediaImage,
    MediaState,
    PowerAction,
    PowerButton,
    PowerState,
    ScreenInfo,
    SwitchState,
    WindowInfo,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FrameArray = npt.NDArray[np.uint8]
else:
    FrameArray = object

__all__ = [
    "CAPABILITIES",
    "CAPABILITY_PROTOCOLS",
    "Apps",
    "Audio",
    "Button",
    "Capability",
    "Clipboard",
    "Driver",
    "DriverSettings",
    "EncodedFrame",
    "EncodedScreen",
    "FrameArray",
    "Held",
    "Keyboard",
    "Media",
    "Mouse",
    "PointedMouse",
    "Power",
    "Screen",
    "Switch",
    "Windows",
    "describe_settings_error",
    "missing_methods",
    "protocol_methods",
]

Capability = Literal[
    "screen", "keyboard", "mouse", "clipboard", "windows", "apps", "ocr", "power", "media",
    "switch", "audio",
]  # fmt: skip
CAPABILITIES: tuple[str, ...] = (
    "screen", "keyboard", "mouse", "clipboard", "windows", "apps", "ocr", "power", "media",
    "switch", "audio",
)  # fmt: skip


@runtime_checkable
class Screen(Protocol):
    """See the screen."""

    async def screens(self) -> list[ScreenInfo]:
        """Every screen, ``id`` 0 first; ids are stable while the device runs."""
        ...

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        """A BGRX frame of the screen, or of ``region`` in that screen's coordinates.

        The returned array may be a view of a buffer the driver reuses on the next call: copy it
        if you keep it past the next ``grab``.
        """
        ...

    async def cursor_position(self) -> tuple[int, int]:
        """The pointer's position in virtual-desktop pixels."""
        ...


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A whole-screen frame as the device itself encoded it (a KVM streamer's JPEG).

    The agent passes it on as it is when a request asks for nothing the pixels would be needed
    for (no region, scale, cursor ring or stability wait, the same format), so a KVM snapshot is
    never decoded and encoded again.
    """

    data: bytes
    format: ImageFormat
    width: int
    height: int


@runtime_checkable
class EncodedScreen(Protocol):
    """A screen that can also hand out frames it encoded itself (optional, beside Screen)."""

    async def snapshot(self, screen_id: int = 0) -> EncodedFrame | None:
        """The device's own encoded frame of the whole screen, or ``None`` when it has none to
        give right now (the agent then grabs raw pixels with :meth:`Screen.grab`)."""
        ...


@runtime_checkable
class Mouse(Protocol):
    """Move and click the pointer. Coordinates are native pixels of the virtual desktop."""

    async def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)``."""
        ...

    async def button(self, button: Button, down: bool) -> None:
        """Press (``down=True``) or release a button where the pointer is."""
        ...

    async def click(self, button: Button = "left", count: int = 1) -> None:
        """Click ``count`` times where the pointer is."""
        ...

    async def scroll(self, delta_x: int, delta_y: int) -> None:
        """Scroll where the pointer is: positive ``delta_y`` scrolls down, positive ``delta_x``
        scrolls right, one unit a wheel notch."""
        ...


@runtime_checkable
class PointedMouse(Protocol):
    """A pointer that can also move and click in one call (optional, beside Mouse).

    The agent clicks at a point with :meth:`click_at` when the driver has it, and with
    :meth:`Mouse.move` then :meth:`Mouse.click` otherwise: the same effect, one trip to the
    device instead of two (the x11 driver's X thread, a network driver's request).
    """

    async def click_at(self, x: int, y: int, button: Button = "left", count: int = 1) -> None:
        """Move the pointer to ``(x, y)`` (refused before any press when it is off the screen),
        then click ``count`` times there."""
        ...


@dataclass(frozen=True, slots=True)
class Held:
    """Keys and buttons held down: key codes in W3C spelling (``ShiftLeft``), or
    ``keycode N`` for a key with no such name, and button names."""

    keys: frozenset[str] = field(default_factory=frozenset)
    buttons: frozenset[Button] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.keys or self.buttons)


@runtime_checkable
class Keyboard(Protocol):
    """Type and press keys."""

    async def key(self, key: Key, down: bool) -> None:
        """Press or release one key; a pressed key stays held until released."""
        ...

    async def type(self, text: str, delay_s: float = 0.0) -> None:
        """Type ``text`` verbatim, any Unicode, waiting ``delay_s`` between characters."""
        ...

    async def release_all(self) -> None:
        """Release every key and button this driver holds down."""
        ...

    async def held(self) -> Held:
        """The keys and buttons down on the device right now, as the device reports them
        where it can (the X server's keymap and pointer state), so that a test can check
        :meth:`release_all` for real."""
        ...


@runtime_checkable
class Clipboard(Protocol):
    """The device's text clipboard."""

    async def clipboard_get(self) -> str:
        """The clipboard's text, ``""`` when it is empty or holds no text."""
        ...

    async def clipboard_set(self, text: str) -> None:
        """Own the clipboard with ``text``."""
        ...


@runtime_checkable
class Windows(Protocol):
    """Top-level windows."""

    async def windows(self) -> list[WindowInfo]:
        """Every managed top-level window, in stacking order, bottom first."""
        ...

    async def focus_window(self, window_id: int) -> None:
        """Raise and focus a window; :class:`~remotehands.errors.NotFoundError` if unknown."""
        ...

    async def move_window(self, window_id: int, bounds: Bounds) -> Bounds:
        """Move and resize a window; answers the bounds it got."""
        ...

    async def close_window(self, window_id: int) -> None:
        """Ask a window to close, as its close button would."""
        ...


@runtime_checkable
class Apps(Protocol):
    """Start and find applications."""

    async def open_app(self, path: str, args: Sequence[str]) -> int:
        """Start a program detached from the agent; answers its pid."""
        ...

    async def app_running(self, name: str) -> list[int]:
        """Pids of processes whose executable name is ``name``."""
        ...


@runtime_checkable
class Power(Protocol):
    """The machine's power: through a KVM's ATX wiring (on, off, long press, reset, the front
    panel's buttons) or asked of the operating system (restart, shutdown).

    A device does some of these; the others raise
    :class:`~remotehands.errors.UnsupportedError` saying what it can do instead, and
    :meth:`power_state` lists the ones it has. Each method returns once the device took the
    request; watching the power LED for its effect is the agent's.
    """

    async def power_state(self) -> PowerState:
        """The power and disk LEDs and what this device can do."""
        ...

    async def power_on(self) -> None:
        """Turn the machine on (a short press of the power button when it is off)."""
        ...

    async def power_off(self) -> None:
        """Ask the machine to turn off gracefully (a short press when it is on)."""
        ...

    async def power_off_hard(self) -> None:
        """Cut the machine's power (a long press of the power button)."""
        ...

    async def power_reset_hard(self) -> None:
        """Pull the reset line."""
        ...

    async def power_click(self, button: PowerButton) -> None:
        """Press a front-panel button whatever the power state is."""
        ...

    async def power_restart(self) -> None:
        """Restart the operating system."""
        ...

    async def power_shutdown(self) -> None:
        """Shut the operating system down."""
        ...


@runtime_checkable
class Media(Protocol):
    """Virtual media: images stored on the device and a drive the machine boots or reads from."""

    async def media_state(self) -> MediaState:
        """The drive, the stored images and the storage left."""
        ...

    async def media_upload(self, name: str, chunks: AsyncIterator[bytes], size: int) -> MediaImage:
        """Store ``size`` bytes from ``chunks`` as the image ``name``, streamed (never held whole
        in memory). When the upload fails or is cancelled nothing half-written stays
        registered under ``name``."""
        ...

    async def media_fetch(self, url: str, name: str | None = None) -> MediaImage:
        """Have the device download an image from ``url`` itself (named after the URL's last
        path segment unless ``name`` is given)."""
        ...

    async def media_mount(self, name: str, cdrom: bool = True, rw: bool = False) -> MediaDrive:
        """Insert the image ``name`` into the drive as a CD-ROM or a flash drive (``rw``:
        writable) and connect the drive to the machine."""
        ...

    async def media_eject(self) -> MediaDrive:
        """Disconnect the drive from the machine and take its image out."""
        ...

    async def media_remove(self, name: str) -> None:
        """Delete a stored image; :class:`~remotehands.errors.NotFoundError` if unknown."""
        ...


@runtime_checkable
class Switch(Protocol):
    """A KVM switch in front of several machines: its ports, the one shown, per-port power."""

    async def switch_ports(self) -> SwitchState:
        """Every port and the active one."""
        ...

    async def switch_set(self, port: int) -> None:
        """Show the machine on ``port``."""
        ...

    async def switch_beacon(self, port: int, on: bool) -> None:
        """Light or clear the beacon LED of ``port``, to find the machine in the rack."""
        ...

    async def switch_power(self, port: int, action: PowerAction) -> None:
        """A power action on the machine of ``port`` through the switch's ATX wiring."""
        ...

    async def switch_click(self, port: int, button: PowerButton) -> None:
        """Press a front-panel button of the machine on ``port``."""
        ...


@runtime_checkable
class Audio(Protocol):
    """Sound output: devices (sinks) and per-application sessions. Volumes are percentages
    (0-100, above 100 where the sound server amplifies); ids are the sound server's."""

    async def audio_status(self) -> AudioState:
        """Every output device and every playing session, read fresh."""
        ...

    async def audio_volume(
        self, volume: float, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Set the volume of a session, of a device, or (neither given) of the default one."""
        ...

    async def audio_mute(
        self, muted: bool, device_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Mute or unmute a session, a device, or (neither given) the default device."""
        ...

    async def audio_default(self, device_id: str) -> None:
        """Make ``device_id`` the default output device."""
        ...

    async def audio_move(self, session_id: str, device_id: str) -> None:
        """Route a session to another output device."""
        ...


CAPABILITY_PROTOCOLS: dict[str, type] = {
    "screen": Screen,
    "keyboard": Keyboard,
    "mouse": Mouse,
    "clipboard": Clipboard,
    "windows": Windows,
    "apps": Apps,
    "power": Power,
    "media": Media,
    "switch": Switch,
    "audio": Audio,
}
"""Capability -> the Protocol a driver declaring it implements. A driver may declare only
these; the capabilities the agent provides above every driver (OCR, sequences, clipboard slots)
are the agent's."""


def protocol_methods(protocol: type) -> list[str]:
    """The public methods a capability Protocol requires, in definition order."""
    return [name for name, value in vars(protocol).items()
            if not name.startswith("_") and inspect.isfunction(value)]  # fmt: skip


def missing_methods(cls: type, capabilities: frozenset[str]) -> dict[str, list[str]]:
    """For each capability in ``capabilities`` that ``cls`` does not implement, the coroutine
    methods it lacks; an unknown capability lacks its Protocol (``["<no Protocol>"]``)."""
    missing: dict[str, list[str]] = {}
    for capability in sorted(capabilities):
        protocol = CAPABILITY_PROTOCOLS.get(capability)
        if protocol is None:
            missing[capability] = ["<no Protocol>"]
            continue
        lacking = [name for name in protocol_methods(protocol)
                   if not inspect.iscoroutinefunction(getattr(cls, name, None))]  # fmt: skip
        if lacking:
            missing[capability] = lacking
    return missing


class DriverSettings(pydantic.BaseModel):
    """Base of every driver's settings: unknown names are refused, values are frozen."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def describe_settings_error(
    driver: str, model: type[DriverSettings], err: pydantic.ValidationError
) -> str:
    """One line per problem, naming the setting, what is wrong and the settings there are."""
    known = ", ".join(model.model_fields) or "none"
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "settings"
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown setting {where!r} (the {driver} driver takes: {known})")
        else:
            problems.append(f"setting {where!r}: {e['msg']} (got {e.get('input')!r})")
    return f"bad settings for the {driver} driver: " + "; ".join(problems)


class Driver:
    """Base of every driver. Subclasses set ``kind``, ``capabilities`` and ``Settings``,
    implement the capability Protocols named in ``capabilities`` (checked when the subclass is
    defined) and take their settings as the keyword ``settings``.

    A driver is an async context manager: ``start`` opens connections, ``close`` releases
    held keys and buttons and frees what it holds.
    """

    kind: str = "base"
    device_type: ClassVar[str] = "desktop"
    """What the device is to the fleet (``desktop``; ``kvm`` for a KVM's drivers)."""
    capabilities: frozenset[str] = frozenset()
    Settings: ClassVar[type[DriverSettings]] = DriverSettings
    """The pydantic model of this driver's settings (``[devices.settings]`` of the agent's
    config file)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = missing_methods(cls, frozenset(cls.capabilities))
        if missing:
            lacks = "; ".join(f"{cap} needs {', '.join(names)}" for cap, names in missing.items())
            raise TypeError(
                f"driver {cls.__qualname__} declares capabilities it does not implement: {lacks}"
            )

    def __init__(self, settings: DriverSettings | None = None) -> None:
        self.settings: DriverSettings = settings if settings is not None else self.Settings()

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> Self:
        """Build the driver from a mapping of its settings; :class:`ConfigError` names each
        bad or unknown setting and the settings there are."""
        try:
            settings = cls.Settings.model_validate(dict(values))
        except pydantic.ValidationError as err:
            raise ConfigError(describe_settings_error(cls.kind, cls.Settings, err)) from err
        return cls(settings=settings)

    async def hardware_id(self) -> str:
        """A stable id of the device this driver fronts, the same across agent restarts.

        This default derives it from the driver's kind and settings (a device is where its
        settings point); drivers whose device has an id of its own (a serial number, a machine
        id) override it.
        """
        digest = hashlib.sha256(f"{self.kind}|{self.settings.model_dump_json()}".encode())
        return digest.hexdigest()[:32]

    async def start(self) -> None:
        """Open connections; called once before any action."""

    async def close(self) -> None:
        """Release held input and free resources; safe to call twice."""

    async def check(self) -> None:
        """Raise :class:`~remotehands.errors.DeviceError` (or a timeout) saying why the device
        cannot serve right now, once started: a KVM gone from the network, or seeing no video.
        The agent calls it now and then and reports the answer in the device's health. This
        default finds nothing; drivers of devices that can fail apart from their agent
        override it with a cheap request."""

    async def __aenter__(self) -> Driver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def has(self, capability: str) -> bool:
        """Whether this driver declares ``capability``."""
        return capability in self.capabilities

    def lacks_because(self, capability: str) -> str | None:
        """Why this device lacks ``capability`` although its driver can have it, in words for
        the error an action gets (the x11 driver's audio when no sound server answered as it
        started); None when there is nothing to say."""
        return None
