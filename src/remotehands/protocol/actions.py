"""The one vocabulary of actions.

Every action has one name (``mouse.click``) used on every layer: the sequence step ``type``, the
agent-link request, the driver call, the REST route (``POST /mouse/click`` on an agent,
``POST /v1/devices/{id}/mouse/click`` on the server), the SDK method, the CLI command and the MCP
tool. :data:`ACTIONS` is the table that ties them together; faces and routers are generated from
it, so a new action is one row here plus its implementation in the agent.

Parameters are pydantic models. For ``GET`` routes they come from the query string, for the others
from the JSON body; path parameters (``{id}``, ``{name}``) are merged in under their own names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from remotehands.protocol.models import Bounds, Button, ImageFormat

__all__ = [
    "ACTIONS",
    "ACTIONS_BY_NAME",
    "ActionSpec",
    "Params",
    "match_route",
    "required_access",
    "wait_seconds",
]

Access = Literal["read", "control"]

MAX_TEXT = 100_000
"""The longest text one type or clipboard action accepts (characters)."""


class Params(BaseModel):
    """Base of every action's parameters: unknown fields are refused, so typos surface."""

    model_config = ConfigDict(extra="forbid")


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


class HotkeyParams(Params):
    """Press keys together and release them in reverse order; ``duration_ms`` holds them."""

    keys: list[KeySpec] | str = Field(min_length=1)
    duration_ms: int = Field(0, ge=0, le=60_000)


class KeyParams(Params):
    """A key or combination such as ``"ctrl+v"`` (a sequence's ``keyboard.key`` step)."""

    keys: list[KeySpec] | str = Field(min_length=1)
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


class ActionsParams(Params):
    """Read the action log, newest last."""

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


# Parameters that say how long an action may legitimately take: whoever waits for the action
# (the SDK's HTTP timeout, the server's wait for the agent) grows its timeout by them.
WAIT_KEYS = frozenset(
    {"timeout_ms", "lock_timeout_ms", "duration_ms", "settle_ms", "wait_dialog_gone_ms", "ms"}
)


def wait_seconds(value: Any) -> float:
    """How long parameters ask an action to wait, at most (their ``WAIT_KEYS`` summed), in s."""
    total = 0.0
    if isinstance(value, dict):
        for key, item in value.items():
            if key in WAIT_KEYS and isinstance(item, int | float) and not isinstance(item, bool):
                total += float(item) / 1000.0
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


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action: its name, its native route, what it needs and who may call it.

    ``access`` is ``read`` for actions that only observe (viewers may call them) and
    ``control`` for anything that changes the device or reads private content.
    ``sequence`` says whether the action may be a step of a sequence.
    """

    name: str
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    params: type[Params]
    capability: str | None
    access: Access
    summary: str
    sequence: bool = True
    path_params: tuple[str, ...] = field(default=())
    status: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_params", tuple(re.findall(r"{(\w+)}", self.path)))


def _a(
    name: str,
    method: Literal["GET", "POST", "PUT", "DELETE"],
    path: str,
    params: type[Params],
    capability: str | None,
    access: Access,
    summary: str,
    *,
    sequence: bool = True,
    status: int = 200,
) -> ActionSpec:
    return ActionSpec(name, method, path, params, capability, access, summary, sequence,
                      status=status)  # fmt: skip


ACTIONS: tuple[ActionSpec, ...] = (
    _a("screenshot", "GET", "/screenshot", ScreenshotParams, "screen", "read",
       "Capture the full screen"),
    _a("screenshot.region", "GET", "/screenshot/region", RegionScreenshotParams, "screen",
       "read", "Capture a screen region"),
    _a("screenshot.cursor", "GET", "/screenshot/cursor-position", NoParams, "screen", "read",
       "Get the cursor position"),
    _a("screenshots", "POST", "/screenshots", ScreenshotsParams, "screen", "control",
       "Capture several variants (crop, scale, format, upload)"),
    _a("screens", "GET", "/screens", NoParams, "screen", "read", "List the screens"),
    _a("mouse.move", "POST", "/mouse/move", MoveParams, "mouse", "control",
       "Move the cursor"),
    _a("mouse.click", "POST", "/mouse/click", ClickParams, "mouse", "control",
       "Click at the current position or at x,y"),
    _a("mouse.double_click", "POST", "/mouse/double-click", ClickParams, "mouse", "control",
       "Double-click"),
    _a("mouse.scroll", "POST", "/mouse/scroll", ScrollParams, "mouse", "control",
       "Scroll at a position"),
    _a("mouse.drag", "POST", "/mouse/drag", DragParams, "mouse", "control",
       "Drag from one position to another"),
    _a("mouse.down", "POST", "/mouse/down", ButtonParams, "mouse", "control",
       "Press a button (no release)"),
    _a("mouse.up", "POST", "/mouse/up", ButtonParams, "mouse", "control",
       "Release a pressed button"),
    _a("keyboard.type", "POST", "/keyboard/type", TypeParams, "keyboard", "control",
       "Type text"),
    _a("keyboard.hotkey", "POST", "/keyboard/hotkey", HotkeyParams, "keyboard", "control",
       "Press a key combination"),
    _a("keyboard.key", "POST", "/keyboard/key", KeyParams, "keyboard", "control",
       "Press a key or combination such as ctrl+v"),
    _a("keyboard.down", "POST", "/keyboard/down", KeyHoldParams, "keyboard", "control",
       "Hold a key down until released"),
    _a("keyboard.up", "POST", "/keyboard/up", KeyHoldParams, "keyboard", "control",
       "Release a held key"),
    _a("clipboard.get", "GET", "/clipboard", ClipboardGetParams, "clipboard", "control",
       "Read the clipboard"),
    _a("clipboard.set", "POST", "/clipboard", ClipboardSetParams, "clipboard", "control",
       "Write the clipboard"),
    _a("clipboard.slots", "GET", "/clipboard/slots", NoParams, "clipboard", "control",
       "List clipboard slots"),
    _a("clipboard.slot_get", "GET", "/clipboard/slots/{name}", SlotParams, "clipboard",
       "control", "Read a clipboard slot"),
    _a("clipboard.slot_store", "PUT", "/clipboard/slots/{name}", SlotStoreParams, "clipboard",
       "control", "Store text in a slot"),
    _a("clipboard.slot_delete", "DELETE", "/clipboard/slots/{name}", SlotParams, "clipboard",
       "control", "Delete a slot", status=204),
    _a("clipboard.slots_clear", "DELETE", "/clipboard/slots", NoParams, "clipboard", "control",
       "Delete all slots", status=204),
    _a("clipboard.slot_restore", "POST", "/clipboard/slots/{name}/restore", SlotRestoreParams,
       "clipboard", "control", "Restore a slot to the OS clipboard"),
    _a("clipboard.capture", "POST", "/clipboard/capture", CaptureParams, "clipboard",
       "control", "Batch capture into clipboard slots"),
    _a("sequence", "POST", "/sequence", SequenceParams, None, "control",
       "Run an ordered batch of steps under the device lock", sequence=False),
    _a("windows.list", "GET", "/windows", NoParams, "windows", "read", "List windows"),
    _a("windows.focused", "GET", "/windows/focused", NoParams, "windows", "read",
       "Get the focused window"),
    _a("dialog.get", "GET", "/windows/dialog", NoParams, "windows", "read",
       "Detect the active dialog"),
    _a("dialog.close", "POST", "/windows/dialog/close", DialogCloseParams, "windows",
       "control", "Close the active dialog"),
    _a("window.focus", "POST", "/windows/{id}/focus", WindowFocusParams, "windows", "control",
       "Focus a window"),
    _a("window.move", "POST", "/windows/{id}/move", WindowMoveParams, "windows", "control",
       "Move and resize a window"),
    _a("window.close", "POST", "/windows/{id}/close", WindowParams, "windows", "control",
       "Close a window"),
    _a("application.open", "POST", "/application/open", AppOpenParams, "apps", "control",
       "Open an application"),
    _a("application.running", "GET", "/application/running", AppRunningParams, "apps", "read",
       "Is an application running"),
    _a("application.close", "POST", "/application/close", AppCloseParams, "apps", "control",
       "Close an application window"),
    _a("actions", "GET", "/actions", ActionsParams, None, "read", "The recent action log",
       sequence=False),
    _a("sleep", "POST", "/sleep", SleepParams, None, "control", "Pause (in sequences)"),
)  # fmt: skip

ACTIONS_BY_NAME: dict[str, ActionSpec] = {a.name: a for a in ACTIONS}


def required_access(spec: ActionSpec, params: Params) -> Access:
    """The access a call needs: the action's own, or ``control`` when a screenshot is to be
    uploaded somewhere (that makes the device send data to a URL of the caller's choosing)."""
    if getattr(params, "upload_url", None):
        return "control"
    return spec.access


_ROUTES: list[tuple[str, re.Pattern[str], ActionSpec]] = [
    (a.method, re.compile("^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", a.path) + "$"), a)
    for a in ACTIONS
]


def match_route(method: str, path: str) -> tuple[ActionSpec, dict[str, str]] | None:
    """Find the action served at ``method path`` and its path parameters, or ``None``."""
    for route_method, pattern, spec in _ROUTES:
        if route_method == method:
            m = pattern.match(path)
            if m:
                return spec, m.groupdict()
    return None
