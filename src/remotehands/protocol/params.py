"""The parameters of every action: one pydantic model each, and the models they share.

Unknown fields are refused (``extra="forbid"``) so that typos surface. For ``GET`` routes the
parameters come from the query string (see :mod:`remotehands.protocol.query`), for the others
from the JSON body; path parameters (``{id}``, ``{name}``) are merged in under their own names.
The table of :mod:`remotehands.protocol.actions` names each action's model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, Self

import httpx
import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from remotehands.errors import ValidationError
from remotehands.protocol.models import Bounds, Button, ImageFormat, PowerAction, PowerButton
from remotehands.protocol.regions import parse_regions
from remotehands.protocol.validation import describe_errors

__all__ = [
    "MAX_KEYS",
    "MAX_TEXT",
    "MAX_VARIANTS",
    "MAX_VOLUME",
    "POWER_TIMEOUT_S",
    "UPLOAD_TIMEOUT_S",
    "WAIT_KEYS",
    "WAIT_S_KEYS",
    "ActParams",
    "ActionsParams",
    "AppCloseParams",
    "AppOpenParams",
    "AppRunningParams",
    "AudioDefaultParams",
    "AudioMoveParams",
    "AudioMuteParams",
    "AudioVolumeParams",
    "ButtonParams",
    "Capture",
    "CaptureParams",
    "ClickParams",
    "ClickTextParams",
    "ClipboardGetParams",
    "ClipboardSetParams",
    "DialogCloseParams",
    "DragParams",
    "FindTextParams",
    "FrameFields",
    "HotkeyParams",
    "ImageName",
    "KeyHoldParams",
    "KeyParams",
    "KeySpec",
    "Keys",
    "MediaFetchParams",
    "MediaMountParams",
    "MediaNameParams",
    "MediaUploadParams",
    "MoveParams",
    "NoParams",
    "OcrParams",
    "Params",
    "PowerActionParams",
    "PowerClickParams",
    "RegionScreenshotParams",
    "ScreenshotParams",
    "ScreenshotsParams",
    "ScreenshotsRequest",
    "ScrollParams",
    "SequenceParams",
    "SequenceStep",
    "SleepParams",
    "SlotParams",
    "SlotRestoreParams",
    "SlotStoreParams",
    "StabilityFields",
    "StabilityParams",
    "StreamedParams",
    "SwitchBeaconParams",
    "SwitchClickParams",
    "SwitchPortParams",
    "SwitchPowerParams",
    "TypeParams",
    "Upload",
    "UploadFields",
    "UploadFormat",
    "UploadMethod",
    "Variant",
    "WaitTextParams",
    "WindowFocusParams",
    "WindowId",
    "WindowMoveParams",
    "WindowParams",
    "WindowRef",
    "check_header",
    "check_image_name",
    "check_url",
    "parse_window_id",
    "wait_seconds",
]

MAX_TEXT = 100_000
"""The longest text one type or clipboard action accepts (characters)."""


class Params(BaseModel):
    """Base of every action's parameters: unknown fields are refused, so typos surface."""

    model_config = ConfigDict(extra="forbid")


UploadMethod = Literal["POST", "PUT", "PATCH"]
"""HTTP methods an upload may use."""

UploadFormat = Literal["raw", "multipart"]
"""``raw``: the image is the body; ``multipart``: a ``multipart/form-data`` file field."""

MAX_VARIANTS: Final = 16
"""How many variants one request may ask for."""

UPLOAD_TIMEOUT_S: Final = 10.0
"""How long an upload may take, connection to last byte of the answer, unless told."""

_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 field name
_BAD_VALUE: Final = re.compile(r"[\x00\r\n]")


def check_url(url: str) -> str:
    """``url`` when it is an absolute http(s) URL; :class:`ValidationError` otherwise."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise ValidationError(f"bad upload URL {url!r}: {err}") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValidationError(f"bad upload URL {url!r}: use an absolute http:// or https:// URL")
    return url


def check_header(name: str, value: str) -> None:
    """Refuse a header HTTP cannot carry (a bad name, a line break or NUL, non-Latin-1)."""
    if not _TOKEN.fullmatch(name):
        raise ValidationError(f"bad upload header name {name!r}")
    if _BAD_VALUE.search(value):
        raise ValidationError(f"upload header {name} holds a line break or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as err:
        raise ValidationError(f"upload header {name} holds characters HTTP cannot carry") from err


class Upload(Params):
    """Where and how a variant's image is sent."""

    url: str
    """An absolute ``http://`` or ``https://`` URL."""
    method: UploadMethod = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with the upload (``Authorization``, ...); ``Content-Type`` is ours for multipart."""
    include_inline: bool = True
    """Also answer the image in the response; ``false`` answers ``image: null``."""
    format: UploadFormat = "raw"
    name: str = Field(default="screenshot", min_length=1, max_length=100)
    """The multipart field's name (and file name, with the format's extension)."""
    timeout_ms: int = Field(default=int(UPLOAD_TIMEOUT_S * 1000), ge=1, le=300_000)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        try:
            return check_url(value)
        except ValidationError as err:
            raise ValueError(err.details) from err

    @field_validator("headers")
    @classmethod
    def _sendable(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            for name, text in value.items():
                check_header(name, text)
        except ValidationError as err:
            raise ValueError(err.details) from err
        return value


class Variant(Params):
    """One image made from the frame: crop (or window), scale, format, upload."""

    name: str = Field(min_length=1, max_length=100)
    crop: Bounds | None = None
    """A rectangle of the screen, in native pixels; it must lie inside the screen."""
    scale_x: float = Field(default=1.0, gt=0, le=8)
    scale_y: float = Field(default=1.0, gt=0, le=8)
    format: ImageFormat = "png"
    jpeg_quality: int = Field(default=75, ge=1, le=100)
    """Quality of JPEG and WebP variants."""
    window_id: int | None = None
    """Crop to this window's bounds (clipped to the screen); ``0x..`` strings are accepted."""
    upload: Upload | None = None

    @field_validator("window_id", mode="before")
    @classmethod
    def _hex_id(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError as err:
                raise ValueError(f"window_id {value!r} is not a number") from err
        return value

    @model_validator(mode="after")
    def _one_area(self) -> Self:
        if self.crop is not None and self.window_id is not None:
            raise ValueError("give crop or window_id, not both")
        return self


class ScreenshotsRequest(Params):
    """The body of ``POST /screenshots``: 1 to 16 variants with distinct names."""

    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)

    @field_validator("variants")
    @classmethod
    def _distinct_names(cls, value: list[Variant]) -> list[Variant]:
        seen: set[str] = set()
        for variant in value:
            if variant.name in seen:
                raise ValueError(f"two variants are named {variant.name!r}: names must differ")
            seen.add(variant.name)
        return value


class StabilityParams(Params):
    """How :func:`wait_stable` decides the screen has settled (the reference's query fields)."""

    pixel_delta: int = Field(default=30, ge=0, le=255)
    """A pixel changed when any channel differs by more than this between consecutive polls."""
    stable_ratio: float = Field(default=0.2, ge=0.0, le=100.0)
    """In percent of watched pixels: a poll is still when ``change_ratio * 100 <= stable_ratio``."""
    stable_window_ms: int = Field(default=500, ge=0, le=600_000)
    """How long the screen must stay still."""
    timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    """When to give up and answer ``timed_out``."""
    poll_interval_ms: int = Field(default=200, ge=1, le=60_000)
    """Time between polls."""
    min_change_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    """A fraction: first wait until the screen differs this much from the first frame."""
    ignore_region: list[Bounds] = Field(default_factory=list)
    """Regions whose changes do not count (a clock, a spinner)."""
    watch_region: list[Bounds] = Field(default_factory=list)
    """When given, only these regions count."""

    @field_validator("ignore_region", "watch_region", mode="before")
    @classmethod
    def _regions_from_text(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            try:
                return parse_regions(value)
            except ValidationError as err:
                raise ValueError(err.details) from err
        return value

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> StabilityParams:
        """Build from query or JSON values (regions may be query strings); bad values raise
        :class:`~remotehands.errors.ValidationError` naming each field and its range."""
        try:
            return cls.model_validate(dict(values))
        except pydantic.ValidationError as err:
            problems = describe_errors(err.errors())
            raise ValidationError(f"bad stability parameters: {problems}") from err


class NoParams(Params):
    """An action without parameters."""


class StabilityFields(Params):
    """The wait-for-stable knobs shared by the screenshot actions (see agent.stability)."""

    wait_stable: bool = False
    pixel_delta: int = Field(30, ge=0, le=255)
    stable_ratio: float = Field(0.2, ge=0, le=100)
    stable_window_ms: int = Field(500, ge=0, le=600_000)
    timeout_ms: int = Field(5000, ge=0, le=600_000)
    poll_interval_ms: int = Field(200, ge=10, le=60_000)
    min_change_ratio: float | None = Field(None, ge=0, le=1)
    ignore_region: str | None = None
    watch_region: str | None = None


class UploadFields(Params):
    """Send the image to a URL as well (desktopkit's ``upload_*`` query parameters)."""

    upload_url: str | None = None
    upload_method: Literal["POST", "PUT"] = "POST"
    upload_format: Literal["raw", "multipart"] = "raw"
    upload_header: list[str] = Field(default_factory=list)
    upload_include_inline: bool = True
    upload_name: str = "screenshot"


class ScreenshotParams(StabilityFields, UploadFields):
    """``GET /screenshot``: the whole screen."""

    screen_id: int = Field(0, ge=0)
    cursor_ring: bool = False
    format: ImageFormat = "jpeg"
    quality: int = Field(75, ge=1, le=100)
    jpeg_quality: int | None = Field(None, ge=1, le=100)
    scale: float = Field(1.0, gt=0, le=4)


class RegionScreenshotParams(ScreenshotParams):
    """``GET /screenshot/region``: a rectangle of the screen."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class ScreenshotsParams(Params):
    """``POST /screenshots``: several variants of one frame (see agent.screenshots)."""

    variants: list[dict[str, Any]] = Field(min_length=1, max_length=16)
    screen_id: int = Field(0, ge=0)


class FrameFields(Params):
    """``frame_id``: the coordinates are pixels of that screenshot (scaled, or of a region), and
    the agent maps them back to the native screen. Without it they are native pixels."""

    frame_id: int | None = Field(None, ge=1)


class MoveParams(FrameFields):
    """Move the pointer."""

    x: int
    y: int


class ClickParams(FrameFields):
    """Click at the current position, or at ``x``,``y`` when both are given."""

    button: Button = "left"
    x: int | None = None
    y: int | None = None


class ButtonParams(FrameFields):
    """Press or release a button."""

    button: Button = "left"
    x: int | None = None
    y: int | None = None


class ScrollParams(FrameFields):
    """Scroll by wheel notches at a position (the current one when x/y are left out)."""

    x: int | None = None
    y: int | None = None
    delta_x: int = Field(0, ge=-1000, le=1000)
    delta_y: int = Field(0, ge=-1000, le=1000)


class DragParams(FrameFields):
    """Press at one point, move there smoothly, release."""

    from_x: int
    from_y: int
    to_x: int
    to_y: int
    button: Button = "left"
    duration_ms: int = Field(200, ge=0, le=60_000)


class TypeParams(Params):
    """Type text verbatim; ``duration_ms`` spreads the characters over that time."""

    text: str = Field(min_length=1, max_length=MAX_TEXT)
    duration_ms: int = Field(0, ge=0, le=600_000)


KeySpec = str | dict[str, str]

MAX_KEYS: Final = 16
"""The most keys one hotkey or key action presses together (no keyboard chord has more)."""

Keys = (
    Annotated[list[KeySpec], Field(min_length=1, max_length=MAX_KEYS)]
    | Annotated[str, Field(min_length=1, max_length=256)]
)
"""Keys pressed together: a list, or one string such as ``"ctrl+shift+t"``."""


class HotkeyParams(Params):
    """Press keys together and release them in reverse order; ``duration_ms`` holds them."""

    keys: Keys
    duration_ms: int = Field(0, ge=0, le=60_000)


class KeyParams(Params):
    """A key or combination such as ``"ctrl+v"`` (a sequence's ``keyboard.key`` step)."""

    keys: Keys
    duration_ms: int = Field(0, ge=0, le=60_000)


class KeyHoldParams(Params):
    """Hold down or release one key."""

    key: KeySpec


class ClipboardGetParams(Params):
    """Read the clipboard, at most ``max_bytes`` of UTF-8."""

    max_bytes: int = Field(1_048_576, ge=1, le=64 * 1_048_576)


class ClipboardSetParams(Params):
    """Write text to the clipboard."""

    text: str = Field(max_length=16 * 1_048_576)


_SLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_slot(name: str) -> str:
    if not _SLOT_NAME.match(name):
        raise ValueError(
            "a slot name is 1-64 letters, digits, '_', '.' or '-' (for example panel_1)"
        )
    return name


WindowId = Annotated[int, BeforeValidator(lambda v: parse_window_id(v))]
"""A window id: a number, or the same as a string, decimal or ``0x...`` hex; made a number."""


def _checked_window_ref(value: int | str) -> int | str:
    parse_window_id(value)
    return value


WindowRef = Annotated[int | str, AfterValidator(_checked_window_ref)]
"""A window id checked like :data:`WindowId` but kept as given (the wire form stays the
caller's)."""


class SlotParams(Params):
    """Name a clipboard slot."""

    name: str

    _check = field_validator("name")(classmethod(lambda cls, v: _check_slot(v)))


class SlotStoreParams(SlotParams):
    """Store text in a slot."""

    text: str = Field(max_length=16 * 1_048_576)


class SlotRestoreParams(Params):
    """Put a slot back on the OS clipboard (``slot_name`` in sequences, ``name`` in paths)."""

    name: str | None = None
    slot_name: str | None = None


class Capture(Params):
    """One capture: focus a window, select all, copy, settle, store the clipboard in a slot."""

    slot: str
    focus_window_id: WindowRef | None = None
    select_all: bool = True
    copy_: bool = Field(True, alias="copy")
    settle_ms: int = Field(150, ge=0, le=10_000)
    max_bytes: int = Field(1_048_576, ge=1, le=64 * 1_048_576)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    _check = field_validator("slot")(classmethod(lambda cls, v: _check_slot(v)))


class CaptureParams(Params):
    """Batch capture into clipboard slots."""

    captures: list[Capture] = Field(min_length=1, max_length=64)


class WindowParams(Params):
    """Name a window; ids are accepted as numbers or as ``0x...`` hex strings."""

    id: WindowId


class WindowFocusParams(Params):
    """A sequence's ``window.focus`` step or ``POST /windows/{id}/focus``."""

    id: WindowRef | None = None
    window_id: WindowRef | None = None


class WindowMoveParams(Params):
    """Move and resize a window."""

    id: WindowRef
    bounds: Bounds
    lock_timeout_ms: int = Field(10_000, ge=0, le=600_000)


class DialogCloseParams(Params):
    """Close the active dialog (or the given one): Escape first, then the close request."""

    window_id: WindowRef | None = None
    wait_dialog_gone_ms: int = Field(800, ge=0, le=60_000)


class AppOpenParams(Params):
    """Start a program."""

    path: str = Field(min_length=1, max_length=4096)
    args: list[str] = Field(default_factory=list, max_length=256)


class AppRunningParams(Params):
    """Is a program running, by executable name."""

    name: str = Field(min_length=1, max_length=255)


class AppCloseParams(Params):
    """Close an application's window."""

    window_id: WindowRef


MAX_VOLUME: Final = 150.0
"""The loudest volume an audio action sets, in percent: above 100 the sound server amplifies
(PulseAudio's own mixers go to 150 %), and past that sound distorts."""

AudioId = Annotated[str, Field(min_length=1, max_length=256)]
"""An output device's or a session's id, as :class:`~remotehands.protocol.models.AudioState`
lists it."""


class _AudioTarget(Params):
    """A session, a device, or neither (then the default device); never both."""

    device_id: AudioId | None = None
    session_id: AudioId | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.device_id is not None and self.session_id is not None:
            raise ValueError("give device_id or session_id, not both (neither: the default device)")
        return self


class AudioVolumeParams(_AudioTarget):
    """Set a volume in percent (0-100, up to 150 amplified) of a session, a device, or the
    default device."""

    volume: float = Field(ge=0, le=MAX_VOLUME)


class AudioMuteParams(_AudioTarget):
    """Mute (or with ``muted=false`` unmute) a session, a device, or the default device."""

    muted: bool = True


class AudioDefaultParams(Params):
    """Make an output device the default one."""

    device_id: AudioId


class AudioMoveParams(Params):
    """Route a session to another output device."""

    session_id: AudioId
    device_id: AudioId


class ActionsParams(Params):
    """Read the action log, newest first."""

    limit: int = Field(100, ge=1, le=10_000)


class SleepParams(Params):
    """Pause a sequence."""

    ms: int = Field(ge=0, le=600_000)


class SequenceStep(BaseModel):
    """One step of a sequence: ``type`` is an action name; the other fields its parameters."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = None


class SequenceParams(Params):
    """An ordered batch of actions under the device lock."""

    steps: Annotated[list[SequenceStep], Field(min_length=1, max_length=1000)]
    on_error: Literal["abort", "continue"] = "abort"
    lock_timeout_ms: int = Field(10_000, ge=0, le=600_000)


# -- power, virtual media, KVM switch -----------------------------------------------------------

POWER_TIMEOUT_S: Final = 30.0
"""How long a power action watches the power LED for its effect, unless told."""


class PowerActionParams(Params):
    """A power action; with ``wait`` the agent watches the power LED for up to ``timeout_s``
    and answers what it saw (see :class:`~remotehands.protocol.results.PowerResult`)."""

    wait: bool = True
    timeout_s: float = Field(POWER_TIMEOUT_S, gt=0, le=600)
    lock_timeout_ms: int = Field(10_000, ge=0, le=600_000)


class PowerClickParams(PowerActionParams):
    """Press a front-panel button."""

    button: PowerButton


_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+@()\[\] -]{0,254}$")


def check_image_name(name: str) -> str:
    """``name`` when it is a plain file name for a stored image (no path, no leading dot);
    :class:`ValueError` saying what a name may be otherwise."""
    if not _IMAGE_NAME.match(name) or name.endswith((" ", ".")) or ".." in name:
        raise ValueError(
            f"{name!r} is not an image name: use 1-255 letters, digits, spaces and _.-+@()[], "
            "not starting with a dot or a space, such as debian-12.iso"
        )
    return name


ImageName = Annotated[str, AfterValidator(check_image_name)]
"""The name of an image in a device's virtual-media storage: a plain file name."""


class MediaNameParams(Params):
    """Name a stored image."""

    name: ImageName


class StreamedParams(Params):
    """Base of the parameters of a streamed action (the row's ``streamed``): the request body
    is the payload, ``size`` its length (the request's ``Content-Length``, or the size of a
    transfer on the agent link).

    The bytes themselves are not a field: the face that receives them attaches them with
    :meth:`with_body` (an async iterator of ``bytes``) before handing the action over.
    """

    size: int | None = Field(None, ge=0)

    _body: Any = pydantic.PrivateAttr(default=None)

    def with_body(self, chunks: Any) -> Self:
        """Attach the payload (an async iterator of ``bytes``) and return ``self``."""
        self._body = chunks
        return self

    @property
    def body(self) -> Any:
        """The attached payload, ``None`` when none is."""
        return self._body


class MediaUploadParams(StreamedParams, MediaNameParams):
    """Store an image whose bytes are the request body (``PUT /media/images/{name}``)."""


class MediaFetchParams(Params):
    """Have the device download an image from ``url`` itself."""

    url: str
    name: ImageName | None = None
    timeout_s: float = Field(600.0, gt=0, le=86_400)

    _check = field_validator("url")(classmethod(lambda cls, v: _checked_url(v)))


def _checked_url(url: str) -> str:
    try:
        return check_url(url)
    except ValidationError as err:
        raise ValueError(err.details) from None


class MediaMountParams(MediaNameParams):
    """Insert a stored image into the drive and connect it: as a CD-ROM (``cdrom``) or a
    flash drive, read-only or writable (``rw``, flash drives only)."""

    cdrom: bool = True
    rw: bool = False

    @model_validator(mode="after")
    def _rw_flash_only(self) -> Self:
        if self.cdrom and self.rw:
            raise ValueError("a CD-ROM is read-only: give cdrom=false to mount it writable")
        return self


class SwitchPortParams(Params):
    """Name a port of a KVM switch (numbered from 0)."""

    port: int = Field(ge=0, le=255)


class SwitchBeaconParams(SwitchPortParams):
    """Light (``on``) or clear a port's beacon LED."""

    on: bool = True


class SwitchPowerParams(SwitchPortParams, PowerActionParams):
    """A power action on the machine of a port."""

    action: PowerAction


class SwitchClickParams(SwitchPortParams, PowerActionParams):
    """Press a front-panel button of the machine of a port."""

    button: PowerButton


# -- OCR and act: the actions for AI agents -----------------------------------------------


class OcrParams(Params):
    """Read the text on the screen (or on a rectangle of it, in native pixels): words and lines
    with their boxes and confidence. Small text is scaled up before recognition."""

    screen_id: int = Field(0, ge=0)
    x: int | None = Field(None, ge=0)
    y: int | None = Field(None, ge=0)
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    upscale: float | None = Field(None, ge=1.0, le=4.0)
    """Scale the image up by this before recognition; ``None``: 1.5 (small UI text needs it)."""
    min_confidence: float = Field(0.0, ge=0.0, le=100.0)
    """Leave out words recognised with less confidence (0-100)."""

    @model_validator(mode="after")
    def _whole_region(self) -> Self:
        given = [v is not None for v in (self.x, self.y, self.width, self.height)]
        if any(given) and not all(given):
            raise ValueError("give all of x, y, width and height for a region, or none of them")
        return self

    def region(self) -> Bounds | None:
        """The rectangle asked for, or ``None`` for the whole screen."""
        if self.x is None or self.y is None or self.width is None or self.height is None:
            return None
        return Bounds(x=self.x, y=self.y, width=self.width, height=self.height)


class FindTextParams(OcrParams):
    """Find a phrase on the screen: a case-insensitive, fuzzy match over runs of words."""

    text: str = Field(min_length=1, max_length=500)
    min_score: float = Field(0.8, ge=0.0, le=1.0)
    """How alike (0..1) the words seen must be to the phrase to count as a match."""


class ClickTextParams(FindTextParams):
    """Find a phrase, then click the centre of its box. Several matches are refused unless
    ``index`` says which one (0 is the first in reading order)."""

    index: int | None = Field(None, ge=0)
    button: Button = "left"
    double: bool = False


class WaitTextParams(FindTextParams):
    """Wait until a phrase is on the screen (or, with ``gone``, no longer is)."""

    gone: bool = False
    timeout_ms: int = Field(10_000, ge=0, le=600_000)
    poll_interval_ms: int = Field(250, ge=10, le=60_000)


class ActParams(Params):
    """Run steps (any sequence step), then wait until the screen settles and answer it.

    The screen counts as settled when, between polls ``poll_interval_ms`` apart, at most
    ``stable_ratio`` percent of its pixels changed by more than ``pixel_delta`` (so JPEG noise
    and a blinking caret do not count) for ``stable_window_ms``; ``timeout_ms`` bounds the
    wait. After each step the agent looks for up to ``step_wait_ms`` for the screen to change
    (more than ``change_pixels`` pixels).
    """

    steps: Annotated[list[SequenceStep], Field(max_length=1000)] = Field(default_factory=list)
    on_error: Literal["abort", "continue"] = "abort"
    lock_timeout_ms: int = Field(10_000, ge=0, le=600_000)
    screen_id: int = Field(0, ge=0)
    timeout_ms: int = Field(5000, ge=0, le=600_000)
    stable_window_ms: int = Field(150, ge=0, le=60_000)
    poll_interval_ms: int = Field(30, ge=5, le=10_000)
    step_wait_ms: int = Field(30, ge=0, le=10_000)
    change_pixels: int = Field(64, ge=0, le=100_000_000)
    """A step changed the screen when more pixels than this moved by over ``pixel_delta``
    (a typed word does; a blinking text caret, up to 2x30 pixels, does not)."""
    pixel_delta: int = Field(40, ge=0, le=255)
    stable_ratio: float = Field(0.05, ge=0.0, le=100.0)
    ignore_region: list[Bounds] = Field(default_factory=list)
    screenshot: bool = True
    """Answer the settled screen as an image (else only the regions that changed)."""
    format: ImageFormat = "jpeg"
    quality: int = Field(75, ge=1, le=100)
    scale: float = Field(1.0, gt=0, le=4)

    @field_validator("ignore_region", mode="before")
    @classmethod
    def _regions_from_text(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            try:
                return parse_regions(value)
            except ValidationError as err:
                raise ValueError(err.details) from err
        return value


# Parameters that say how long an action may legitimately take: whoever waits for the action
# (the SDK's HTTP timeout, the server's wait for the agent) grows its timeout by them.
WAIT_KEYS = frozenset(
    {
        "timeout_ms",
        "lock_timeout_ms",
        "duration_ms",
        "settle_ms",
        "wait_dialog_gone_ms",
        "ms",
        "step_wait_ms",
    }
)
WAIT_S_KEYS = frozenset({"timeout_s"})
"""The same in seconds (a power action's watch of the LED, a fetch's download)."""


def wait_seconds(value: Any) -> float:
    """How long parameters ask an action to wait, at most (their ``WAIT_KEYS`` summed), in s."""
    total = 0.0
    if isinstance(value, dict):
        for key, item in value.items():
            number = isinstance(item, int | float) and not isinstance(item, bool)
            if key in WAIT_KEYS and number:
                total += float(item) / 1000.0
            elif key in WAIT_S_KEYS and number:
                total += float(item)
            else:
                total += wait_seconds(item)
    elif isinstance(value, list):
        total += sum(wait_seconds(item) for item in value)
    return total


def parse_window_id(value: object) -> int:
    """Accept ``12345``, ``"12345"`` or ``"0x4400003"``; anything else is a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("a window id is a number such as 12345 or 0x4400003")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a window id is a positive number")
        return value
    text = value.strip().lower()
    try:
        number = int(text, 16) if text.startswith("0x") else int(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a window id: use a number such as 12345 or 0x4400003"
        ) from None
    if number <= 0:
        raise ValueError("a window id is a positive number")
    return number
