"""Wire models shared by every layer: geometry, screens, windows, health, and the state of a
device's power, virtual media, KVM switch and audio."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AudioDevice",
    "AudioSession",
    "AudioState",
    "Bounds",
    "Button",
    "Health",
    "ImageFormat",
    "MediaDrive",
    "MediaImage",
    "MediaState",
    "PowerAction",
    "PowerButton",
    "PowerState",
    "ScreenInfo",
    "SwitchPort",
    "SwitchState",
    "WindowInfo",
]

Button = Literal["left", "right", "middle"]
"""A mouse button."""

ImageFormat = Literal["jpeg", "png", "webp"]
"""An image encoding the agent produces."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bounds(_Model):
    """A rectangle in native screen pixels."""

    x: int
    y: int
    width: int = Field(gt=0)
    height: int = Field(gt=0)

    def contains(self, x: int, y: int) -> bool:
        """Whether the pixel ``(x, y)`` lies inside."""
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


class ScreenInfo(_Model):
    """One screen (monitor) of a device; ``x``/``y`` place it on the virtual desktop."""

    id: int
    width: int
    height: int
    x: int = 0
    y: int = 0


PowerAction = Literal["on", "off", "off_hard", "reset_hard", "restart", "shutdown"]
"""What a power action asks for: ``on``/``off`` as a short press of the power button would do them
(``off`` is a graceful request the OS may refuse), ``off_hard`` a long press, ``reset_hard`` the
reset line, all through a KVM's ATX wiring; ``restart``/``shutdown`` asked of the operating
system by the agent running on it."""

PowerButton = Literal["power", "power_long", "reset"]
"""A button on the machine's front panel, pressed through a KVM's ATX wiring."""


class PowerState(_Model):
    """The power of the machine a device drives.

    ``on`` is the power LED (``None``: the device cannot tell, an operating system answering
    for itself is ``True``); ``hdd`` the disk activity LED where it is wired. ``actions`` and
    ``buttons`` are what this device can do, so a client offers only those; ``dry_run`` the ones
    of them that only log what they would do.
    """

    on: bool | None
    hdd: bool | None = None
    busy: bool = False
    actions: list[PowerAction] = Field(default_factory=list)
    buttons: list[PowerButton] = Field(default_factory=list)
    dry_run: list[PowerAction] = Field(default_factory=list)
    """The actions that are only dry runs on this device: no command is configured for them,
    so they log what they would do and change nothing (a desktop's ``restart``/``shutdown``)."""


class MediaImage(_Model):
    """An image in a device's virtual-media storage; ``complete`` is false while it is written."""

    name: str
    size: int = Field(ge=0)
    complete: bool = True


class MediaDrive(_Model):
    """The emulated drive the host sees: the image inserted in it, whether it is connected to
    the host, and as what (a CD-ROM or a flash drive, read-only or writable)."""

    image: str | None = None
    connected: bool = False
    cdrom: bool = True
    rw: bool = False


class MediaState(_Model):
    """A device's virtual media: its drive, the images it stores, the storage left."""

    online: bool = True
    busy: bool = False
    drive: MediaDrive = Field(default_factory=MediaDrive)
    images: list[MediaImage] = Field(default_factory=list)
    storage_size: int | None = None
    storage_free: int | None = None


class SwitchPort(_Model):
    """One port of a KVM switch; ``video`` whether a signal is there, ``power`` its ATX power
    LED where the port has ATX wiring (``None`` otherwise)."""

    port: int = Field(ge=0)
    name: str = ""
    video: bool | None = None
    beacon: bool = False
    power: bool | None = None


class SwitchState(_Model):
    """A KVM switch: its ports and the one the KVM shows (``None``: none selected)."""

    active: int | None
    ports: list[SwitchPort]


class AudioDevice(_Model):
    """An output device (a PulseAudio sink). ``volume`` is a percentage, 0-100 (it may go above
    100 where the sound server amplifies)."""

    id: str
    name: str
    volume: float = Field(ge=0)
    muted: bool
    default: bool = False


class AudioSession(_Model):
    """What one application plays (a PulseAudio sink input), on the device ``device_id``."""

    id: str
    name: str
    pid: int | None = None
    volume: float = Field(ge=0)
    muted: bool
    device_id: str | None = None


class AudioState(_Model):
    """Every output device and every playing session, read fresh from the sound server."""

    devices: list[AudioDevice]
    sessions: list[AudioSession]


class WindowInfo(_Model):
    """A top-level window as the native API lists it."""

    id: int
    title: str
    process_name: str | None
    pid: int | None
    bounds: Bounds
    is_focused: bool
    is_dialog: bool


class Health(BaseModel):
    """What a heartbeat reports about the machine the agent runs on.

    Extra fields are ignored, so that a newer agent reporting more keeps its link.
    """

    model_config = ConfigDict(extra="ignore")

    uptime_seconds: float
    cpu_percent: float
    memory_percent: float
