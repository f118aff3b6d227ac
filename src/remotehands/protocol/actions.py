"""The one vocabulary of actions: :data:`ACTIONS`, the table every layer is made from.

Each row holds one action: its wire name, its one public verb, its route, its parameter and
result models, its capability and the access it needs. Every layer follows the row by one rule:

- **wire name** (``mouse.click``): the sequence step ``type`` and the agent-link request. The
  dotted names are fixed by the desktopkit contract for sequence steps.
- **route**: ``method path`` on an agent's native face (``POST /mouse/click``), and the same path
  under ``/v1/devices/{id}`` on the server.
- **SDK method = verb** (``device.click()``), on the sync and the async clients alike.
- **CLI command = verb with ``_`` as ``-``** (``remotehands double-click``).
- **MCP tool = verb** (``click``; the MCP server comes in a later issue).
- **agent handler**: registered against the wire name by the module of the row's capability
  (:mod:`remotehands.agent.capabilities`).
- **driver Protocol method = verb** for every action the driver does in one call:
  ``screens``, ``cursor_position``, ``move``, ``click``, ``scroll``, ``type``,
  ``clipboard_get``, ``clipboard_set``, ``windows``, ``focus_window``, ``move_window``,
  ``close_window``, ``open_app``, ``app_running`` (``Keyboard.type``, ``Windows.windows``).
  Every other action the agent composes from those methods and from the primitives of the
  Protocols (:data:`DRIVER_PRIMITIVES`), named for what they do on any device rather than for
  one action: ``Screen.grab``, ``Mouse.button``, ``Keyboard.key``... (so ``double_click`` is
  ``click`` twice, ``drag`` is ``move`` and ``button``, ``key`` presses and releases
  ``Keyboard.key``, ``focused_window`` picks from ``windows``). A Protocol method is a verb or a
  primitive, nothing else. The row's ``driver`` names the Protocol methods it reaches; it is
  empty for what the agent does alone (clipboard slots, the action log, sequences, sleep).
  The Protocol of a capability is the capability's name capitalised (``mouse`` -> ``Mouse``).

Two rows may share a verb when one verb has two routes: ``keyboard.key`` and ``keyboard.hotkey``
are both the verb ``key``; the second is not ``primary``, and its SDK method and CLI command are
its first alias (``hotkey``), so the older name keeps calling exactly that route. ``aliases``
are older names that still work on the SDK and the CLI (``type_text`` for ``type``). A
``step_only`` action (``sleep``) exists only as a step of a sequence: no SDK method, CLI
command, MCP tool or route on the native face (the server still relays its route).

A ``streamed`` action (``media.upload``) takes its payload as the request body rather than as
JSON: its other parameters come from the path and the query string, the body is handed to the
driver as it arrives (on the agent link, as a chunked transfer), and it is never a sequence step.

A new action is one row here, its models in :mod:`~remotehands.protocol.params` and
:mod:`~remotehands.protocol.results`, and its handler in the agent; the rest follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, cast

from pydantic import BaseModel

from remotehands.protocol import params as _params
from remotehands.protocol.params import *  # noqa: F403 -- the models were defined here first
from remotehands.protocol.params import (
    ActionsParams,
    ActParams,
    AppCloseParams,
    AppOpenParams,
    AppRunningParams,
    AudioDefaultParams,
    AudioMoveParams,
    AudioMuteParams,
    AudioVolumeParams,
    ButtonParams,
    CaptureParams,
    ClickParams,
    ClickTextParams,
    ClipboardGetParams,
    ClipboardSetParams,
    DialogCloseParams,
    DragParams,
    FindTextParams,
    HotkeyParams,
    KeyHoldParams,
    KeyParams,
    MediaFetchParams,
    MediaMountParams,
    MediaNameParams,
    MediaUploadParams,
    MoveParams,
    NoParams,
    OcrParams,
    Params,
    PowerActionParams,
    PowerClickParams,
    RegionScreenshotParams,
    ScreenshotParams,
    ScreenshotsParams,
    ScrollParams,
    SequenceParams,
    SleepParams,
    SlotParams,
    SlotRestoreParams,
    SlotStoreParams,
    SwitchBeaconParams,
    SwitchClickParams,
    SwitchPortParams,
    SwitchPowerParams,
    TypeParams,
    WaitTextParams,
    WindowFocusParams,
    WindowMoveParams,
    WindowParams,
    parse_window_id,
    wait_seconds,
)
from remotehands.protocol.results import (
    ActionLogResult,
    ActResult,
    AppOpened,
    AppRunning,
    AudioChanged,
    AudioStatus,
    CaptureResult,
    ClipboardText,
    CursorPosition,
    DialogClosed,
    DialogResult,
    FocusedWindow,
    MediaDriveResult,
    MediaImageResult,
    MediaStateResult,
    NoContent,
    OcrResult,
    Ok,
    PowerResult,
    PowerStateResult,
    Screens,
    ScreenshotResult,
    ScreenshotsResult,
    SequenceResult,
    SlotList,
    SlotStored,
    SlotText,
    SwitchPowerResult,
    SwitchStateResult,
    TextClicked,
    TextMatches,
    TextWaited,
    WindowList,
    WindowMoved,
)

__all__ = [
    "ACTIONS",
    "ACTIONS_BY_NAME",
    "DRIVER_PRIMITIVES",
    "VERBS",
    "Access",
    "ActionSpec",
    "HttpMethod",
    "Params",
    "by_verb",
    "match_route",
    "parse_window_id",
    "required_access",
    "wait_seconds",
]
__all__ += _params.__all__

Access = Literal["read", "control"]
"""``read``: only observes (viewers may call it); ``control``: changes the device or reads
private content."""

HttpMethod = Literal["GET", "POST", "PUT", "DELETE"]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action and everything every layer needs to know about it (see the module's rule).

    ``sequence`` says whether the action may be a step of a sequence; ``status`` is the HTTP
    status of its success (``204``: no body); ``streamed`` that the request body is the action's
    payload, streamed, not JSON; ``path_params`` are the ``{names}`` of its path.
    """

    name: str
    verb: str
    method: HttpMethod
    path: str
    params: type[Params]
    result: type[BaseModel]
    capability: str | None
    access: Access
    summary: str
    driver: tuple[str, ...] = ()
    sequence: bool = True
    status: int = 200
    aliases: tuple[str, ...] = ()
    primary: bool = True
    step_only: bool = False
    streamed: bool = False
    path_params: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_params", tuple(re.findall(r"{(\w+)}", self.path)))

    @property
    def sdk_method(self) -> str:
        """The SDK method that calls exactly this route: the verb, or for the second route of a
        verb its first alias (``keyboard.hotkey`` -> ``hotkey``)."""
        return self.verb if self.primary else self.aliases[0]

    @property
    def cli_command(self) -> str:
        """The CLI command of :attr:`sdk_method`: its ``_`` written ``-``."""
        return self.sdk_method.replace("_", "-")

    @property
    def names(self) -> tuple[str, ...]:
        """Every SDK name that calls this route: :attr:`sdk_method`, then the other aliases."""
        return (self.sdk_method, *(a for a in self.aliases if a != self.sdk_method))


def _a(
    name: str,
    verb: str,
    route: str,
    params: type[Params],
    result: type[BaseModel],
    capability: str | None,
    access: Access,
    summary: str,
    driver: tuple[str, ...] = (),
    *,
    sequence: bool = True,
    status: int = 200,
    aliases: tuple[str, ...] = (),
    primary: bool = True,
    step_only: bool = False,
    streamed: bool = False,
) -> ActionSpec:
    method, path = route.split(" ", 1)
    return ActionSpec(
        name, verb, cast(HttpMethod, method), path, params, result, capability, access, summary,
        driver, sequence and not streamed, status, aliases, primary, step_only, streamed,
    )  # fmt: skip


DRIVER_PRIMITIVES: frozenset[str] = frozenset({
    "Screen.grab", "EncodedScreen.snapshot", "Mouse.button", "PointedMouse.click_at",
    "Keyboard.key", "Keyboard.release_all", "Keyboard.held",
})  # fmt: skip
"""The driver Protocol methods that are not an action done in one call: the primitives the agent
composes actions from (``Keyboard.key`` presses or releases one key; the action ``key`` is a
whole combination; ``PointedMouse.click_at`` is a move and a click in one trip, where the
driver has it), and the upkeep around them (``release_all`` after a sequence, ``held``).
Every other Protocol method is the verb of the action it does."""

_GRAB = ("Screen.grab",)
_BUTTON = ("Mouse.move", "Mouse.button")
_KEY = ("Keyboard.key",)
_LIST = ("Windows.windows",)
_AUDIO_READ = ("Audio.audio_status",)


def _power(verb: str) -> tuple[str, ...]:
    # A power action reads the state before, acts, then watches the state for its effect.
    return ("Power.power_state", f"Power.{verb}")


def _port(verb: str) -> tuple[str, ...]:
    return ("Switch.switch_ports", f"Switch.{verb}")


ACTIONS: tuple[ActionSpec, ...] = (
    _a("screenshot", "screenshot", "GET /screenshot", ScreenshotParams, ScreenshotResult,
       "screen", "read", "Capture the full screen", ("Screen.grab", "EncodedScreen.snapshot")),
    _a("screenshot.region", "screenshot_region", "GET /screenshot/region",
       RegionScreenshotParams, ScreenshotResult, "screen", "read", "Capture a screen region",
       _GRAB),
    _a("screenshot.cursor", "cursor_position", "GET /screenshot/cursor-position", NoParams,
       CursorPosition, "screen", "read", "Get the cursor position", ("Screen.cursor_position",)),
    _a("screenshots", "screenshots", "POST /screenshots", ScreenshotsParams, ScreenshotsResult,
       "screen", "control", "Capture several variants (crop, scale, format, upload)", _GRAB),
    _a("screens", "screens", "GET /screens", NoParams, Screens, "screen", "read",
       "List the screens", ("Screen.screens",)),
    _a("mouse.move", "move", "POST /mouse/move", MoveParams, Ok, "mouse", "control",
       "Move the cursor", ("Mouse.move",)),
    _a("mouse.click", "click", "POST /mouse/click", ClickParams, Ok, "mouse", "control",
       "Click at the current position or at x,y",
       ("Mouse.click", "Mouse.move", "PointedMouse.click_at")),
    _a("mouse.double_click", "double_click", "POST /mouse/double-click", ClickParams, Ok,
       "mouse", "control", "Double-click", ("Mouse.click", "Mouse.move", "PointedMouse.click_at")),
    _a("mouse.scroll", "scroll", "POST /mouse/scroll", ScrollParams, Ok, "mouse", "control",
       "Scroll at a position", ("Mouse.scroll", "Mouse.move")),
    _a("mouse.drag", "drag", "POST /mouse/drag", DragParams, Ok, "mouse", "control",
       "Drag from one position to another", _BUTTON),
    _a("mouse.down", "mouse_down", "POST /mouse/down", ButtonParams, Ok, "mouse", "control",
       "Press a button (no release)", _BUTTON),
    _a("mouse.up", "mouse_up", "POST /mouse/up", ButtonParams, Ok, "mouse", "control",
       "Release a pressed button", _BUTTON),
    _a("keyboard.type", "type", "POST /keyboard/type", TypeParams, Ok, "keyboard", "control",
       "Type text", ("Keyboard.type",), aliases=("type_text",)),
    _a("keyboard.hotkey", "key", "POST /keyboard/hotkey", HotkeyParams, Ok, "keyboard",
       "control", "Press a key combination", _KEY, aliases=("hotkey",), primary=False),
    _a("keyboard.key", "key", "POST /keyboard/key", KeyParams, Ok, "keyboard", "control",
       "Press a key or combination such as ctrl+v", _KEY),
    _a("keyboard.down", "key_down", "POST /keyboard/down", KeyHoldParams, Ok, "keyboard",
       "control", "Hold a key down until released", _KEY),
    _a("keyboard.up", "key_up", "POST /keyboard/up", KeyHoldParams, Ok, "keyboard", "control",
       "Release a held key", _KEY),
    _a("clipboard.get", "clipboard_get", "GET /clipboard", ClipboardGetParams, ClipboardText,
       "clipboard", "control", "Read the clipboard", ("Clipboard.clipboard_get",)),
    _a("clipboard.set", "clipboard_set", "POST /clipboard", ClipboardSetParams, Ok,
       "clipboard", "control", "Write the clipboard", ("Clipboard.clipboard_set",)),
    _a("clipboard.slots", "clipboard_slots", "GET /clipboard/slots", NoParams, SlotList,
       "clipboard", "control", "List clipboard slots"),
    _a("clipboard.slot_get", "slot_get", "GET /clipboard/slots/{name}", SlotParams, SlotText,
       "clipboard", "control", "Read a clipboard slot"),
    _a("clipboard.slot_store", "slot_store", "PUT /clipboard/slots/{name}", SlotStoreParams,
       SlotStored, "clipboard", "control", "Store text in a slot"),
    _a("clipboard.slot_delete", "slot_delete", "DELETE /clipboard/slots/{name}", SlotParams,
       NoContent, "clipboard", "control", "Delete a slot", status=204),
    _a("clipboard.slots_clear", "slots_clear", "DELETE /clipboard/slots", NoParams, NoContent,
       "clipboard", "control", "Delete all slots", status=204),
    _a("clipboard.slot_restore", "slot_restore", "POST /clipboard/slots/{name}/restore",
       SlotRestoreParams, SlotStored, "clipboard", "control",
       "Restore a slot to the OS clipboard", ("Clipboard.clipboard_set",)),
    _a("clipboard.capture", "clipboard_capture", "POST /clipboard/capture", CaptureParams,
       CaptureResult, "clipboard", "control", "Batch capture into clipboard slots",
       ("Windows.focus_window", "Keyboard.key", "Clipboard.clipboard_get")),
    _a("sequence", "sequence", "POST /sequence", SequenceParams, SequenceResult, None,
       "control", "Run an ordered batch of steps under the device lock", sequence=False),
    _a("windows.list", "windows", "GET /windows", NoParams, WindowList, "windows", "read",
       "List windows", _LIST),
    _a("windows.focused", "focused_window", "GET /windows/focused", NoParams, FocusedWindow,
       "windows", "read", "Get the focused window", _LIST),
    _a("dialog.get", "dialog", "GET /windows/dialog", NoParams, DialogResult, "windows", "read",
       "Detect the active dialog", _LIST),
    _a("dialog.close", "dialog_close", "POST /windows/dialog/close", DialogCloseParams,
       DialogClosed, "windows", "control", "Close the active dialog",
       ("Windows.windows", "Windows.focus_window", "Windows.close_window",
        "Keyboard.key")),
    _a("window.focus", "focus_window", "POST /windows/{id}/focus", WindowFocusParams, Ok,
       "windows", "control", "Focus a window", ("Windows.focus_window",)),
    _a("window.move", "move_window", "POST /windows/{id}/move", WindowMoveParams, WindowMoved,
       "windows", "control", "Move and resize a window", ("Windows.move_window",)),
    _a("window.close", "close_window", "POST /windows/{id}/close", WindowParams, Ok, "windows",
       "control", "Close a window", ("Windows.close_window",)),
    _a("application.open", "open_app", "POST /application/open", AppOpenParams, AppOpened,
       "apps", "control", "Open an application", ("Apps.open_app",)),
    _a("application.running", "app_running", "GET /application/running", AppRunningParams,
       AppRunning, "apps", "read", "Is an application running", ("Apps.app_running",)),
    _a("application.close", "close_app", "POST /application/close", AppCloseParams, Ok, "apps",
       "control", "Close an application window", ("Windows.close_window",)),
    _a("actions", "actions", "GET /actions", ActionsParams, ActionLogResult, None, "read",
       "The recent action log", sequence=False),
    _a("sleep", "sleep", "POST /sleep", SleepParams, Ok, None, "control",
       "Pause (in sequences)", step_only=True),
    # power, virtual media, KVM switch
    _a("power.state", "power_state", "GET /power", NoParams, PowerStateResult, "power", "read",
       "The power and disk LEDs, and the power actions the device has",
       ("Power.power_state",)),
    _a("power.on", "power_on", "POST /power/on", PowerActionParams, PowerResult, "power",
       "control", "Turn the machine on and watch the power LED", _power("power_on")),
    _a("power.off", "power_off", "POST /power/off", PowerActionParams, PowerResult, "power",
       "control", "Ask the machine to turn off and watch the power LED", _power("power_off")),
    _a("power.off_hard", "power_off_hard", "POST /power/off-hard", PowerActionParams,
       PowerResult, "power", "control", "Cut the machine's power (long press)",
       _power("power_off_hard")),
    _a("power.reset_hard", "power_reset_hard", "POST /power/reset-hard", PowerActionParams,
       PowerResult, "power", "control", "Pull the reset line", _power("power_reset_hard")),
    _a("power.click", "power_click", "POST /power/click", PowerClickParams, PowerResult,
       "power", "control", "Press a front-panel button (power, power_long, reset)",
       _power("power_click")),
    _a("power.restart", "power_restart", "POST /power/restart", PowerActionParams, PowerResult,
       "power", "control", "Restart the operating system", _power("power_restart")),
    _a("power.shutdown", "power_shutdown", "POST /power/shutdown", PowerActionParams,
       PowerResult, "power", "control", "Shut the operating system down",
       _power("power_shutdown")),
    _a("media.state", "media_state", "GET /media", NoParams, MediaStateResult, "media", "read",
       "The virtual drive, the stored images and the storage left", ("Media.media_state",)),
    _a("media.upload", "media_upload", "PUT /media/images/{name}", MediaUploadParams,
       MediaImageResult, "media", "control", "Store an image streamed as the request body",
       ("Media.media_upload",), streamed=True),
    _a("media.fetch", "media_fetch", "POST /media/fetch", MediaFetchParams, MediaImageResult,
       "media", "control", "Have the device download an image from a URL",
       ("Media.media_fetch",)),
    _a("media.mount", "media_mount", "POST /media/mount", MediaMountParams, MediaDriveResult,
       "media", "control", "Insert an image into the drive and connect it",
       ("Media.media_mount",)),
    _a("media.eject", "media_eject", "POST /media/eject", NoParams, MediaDriveResult, "media",
       "control", "Disconnect the drive and take its image out", ("Media.media_eject",)),
    _a("media.remove", "media_remove", "DELETE /media/images/{name}", MediaNameParams,
       NoContent, "media", "control", "Delete a stored image", ("Media.media_remove",),
       status=204),
    _a("switch.ports", "switch_ports", "GET /switch", NoParams, SwitchStateResult, "switch",
       "read", "The KVM switch's ports and the active one", ("Switch.switch_ports",)),
    _a("switch.set", "switch_set", "POST /switch/active", SwitchPortParams, SwitchStateResult,
       "switch", "control", "Show the machine on a port", _port("switch_set")),
    _a("switch.beacon", "switch_beacon", "POST /switch/beacon", SwitchBeaconParams,
       SwitchStateResult, "switch", "control", "Light or clear a port's beacon LED",
       _port("switch_beacon")),
    _a("switch.power", "switch_power", "POST /switch/power", SwitchPowerParams,
       SwitchPowerResult, "switch", "control",
       "A power action on a port's machine, watching its power LED", _port("switch_power")),
    _a("switch.click", "switch_click", "POST /switch/click", SwitchClickParams,
       SwitchPowerResult, "switch", "control", "Press a front-panel button of a port's machine",
       _port("switch_click")),
    # audio: the sound server's output devices and per-application sessions
    _a("audio.status", "audio_status", "GET /audio", NoParams, AudioStatus, "audio", "read",
       "List the output devices and the playing sessions", _AUDIO_READ),
    _a("audio.volume", "audio_volume", "POST /audio/volume", AudioVolumeParams, AudioChanged,
       "audio", "control", "Set the volume of a session, a device or the default device",
       ("Audio.audio_volume", *_AUDIO_READ)),
    _a("audio.mute", "audio_mute", "POST /audio/mute", AudioMuteParams, AudioChanged, "audio",
       "control", "Mute or unmute a session, a device or the default device",
       ("Audio.audio_mute", *_AUDIO_READ)),
    _a("audio.default", "audio_default", "POST /audio/default", AudioDefaultParams,
       AudioChanged, "audio", "control", "Make an output device the default one",
       ("Audio.audio_default", *_AUDIO_READ)),
    _a("audio.move", "audio_move", "POST /audio/move", AudioMoveParams, AudioChanged, "audio",
       "control", "Route a session to another output device",
       ("Audio.audio_move", *_AUDIO_READ)),
    # -- for AI agents: OCR on the agent's own frames, and act-then-settle batches ----------
    _a("ocr", "ocr", "GET /ocr", OcrParams, OcrResult, "ocr", "read",
       "Read the text on the screen or a region: words, lines, boxes, confidence", _GRAB),
    _a("ocr.find", "find_text", "GET /ocr/find", FindTextParams, TextMatches, "ocr", "read",
       "Find a phrase on the screen (fuzzy, case-insensitive) and its box", _GRAB),
    _a("ocr.click", "click_text", "POST /ocr/click", ClickTextParams, TextClicked, "ocr",
       "control", "Find a phrase on the screen and click its centre",
       ("Screen.grab", "Mouse.move", "Mouse.click")),
    _a("ocr.wait", "wait_for_text", "GET /ocr/wait", WaitTextParams, TextWaited, "ocr", "read",
       "Wait until a phrase appears on the screen (or disappears)", _GRAB,
       aliases=("wait_text",)),
    _a("act", "act", "POST /act", ActParams, ActResult, "act", "control",
       "Run steps, then answer the settled screen, what changed and each step's result",
       _GRAB, sequence=False),
)  # fmt: skip

ACTIONS_BY_NAME: dict[str, ActionSpec] = {a.name: a for a in ACTIONS}

VERBS: dict[str, ActionSpec] = {a.verb: a for a in ACTIONS if a.primary}
"""Each public verb and the row of its own route."""

_BY_SDK_NAME: dict[str, ActionSpec] = {
    name: a for a in ACTIONS if not a.step_only for name in a.names
}


def by_verb(name: str) -> ActionSpec | None:
    """The action an SDK method or CLI command name calls (``double_click``, ``double-click``,
    ``hotkey``, ``type_text``); ``None`` when no action has that name."""
    return _BY_SDK_NAME.get(name.replace("-", "_"))


def required_access(spec: ActionSpec, params: Params) -> Access:
    """The access a call needs: the action's own, or ``control`` when a screenshot is to be
    uploaded somewhere (that makes the device send data to a URL of the caller's choosing)."""
    # The field from the model's __dict__: getattr on a pydantic model without the field goes
    # through its __getattr__, slowly (about 10 us, on every call through the server).
    if params.__dict__.get("upload_url"):
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
