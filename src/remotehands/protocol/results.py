"""The results of every action: one pydantic model each, in the shapes the desktopkit API has.

The agent's handlers return these models; :func:`to_wire` gives the wire form every face sends
(the native HTTP API, the agent link, the server's device routes): JSON-ready data, with images
left as ``bytes`` (the link sends them as binary frames, HTTP faces as base64 text, see
:mod:`remotehands.protocol.encoding`). Field order is the wire's key order.

Some keys are on the wire only when they have something to say (a screenshot's ``upload``, a
failed variant's ``error``): a model lists them in ``omit_if_none``. A result that is a list or
nothing at all is a :class:`pydantic.RootModel`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    RootModel,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from remotehands.protocol.models import (
    AudioDevice,
    AudioSession,
    Bounds,
    ImageFormat,
    MediaDrive,
    MediaImage,
    MediaState,
    PowerState,
    ScreenInfo,
    SwitchState,
    WindowInfo,
)

__all__ = [
    "STEP_OWN_KEYS",
    "ActResult",
    "ActionLogEntry",
    "ActionLogResult",
    "AppOpened",
    "AppRunning",
    "AudioChanged",
    "AudioStatus",
    "CaptureEntry",
    "CaptureResult",
    "ClipboardText",
    "CursorPosition",
    "DialogClosed",
    "DialogResult",
    "FocusedWindow",
    "MediaDriveResult",
    "MediaImageResult",
    "MediaStateResult",
    "NoContent",
    "OcrLine",
    "OcrResult",
    "OcrWord",
    "Ok",
    "PowerResult",
    "PowerStateResult",
    "Result",
    "Screens",
    "ScreenshotResult",
    "ScreenshotsResult",
    "SequenceResult",
    "SlotInfo",
    "SlotList",
    "SlotStored",
    "SlotText",
    "StabilityReport",
    "StepOutcome",
    "StepResult",
    "SwitchPowerResult",
    "SwitchStateResult",
    "TextClicked",
    "TextMatch",
    "TextMatches",
    "TextWaited",
    "UploadAnswer",
    "UploadResult",
    "VariantImage",
    "WindowList",
    "WindowMoved",
    "to_wire",
]


def to_wire(result: BaseModel) -> Any:
    """The wire form of a result: what the faces and the link send (``bytes`` kept)."""
    return result.model_dump(by_alias=True)


class Result(BaseModel):
    """Base of the object results: unknown fields are refused; ``omit_if_none`` keys are left
    off the wire when they are ``None``."""

    model_config = ConfigDict(extra="forbid")

    omit_if_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        for key in self.omit_if_none:
            if isinstance(data, dict) and data.get(key, 0) is None:
                del data[key]
        return data


class Ok(Result):
    """The plain success answer of an action that has nothing else to say."""

    status: Literal["ok"] = "ok"


class NoContent(RootModel[None]):
    """No body at all (a ``204``)."""

    root: None = None


# -- screen ----------------------------------------------------------------------------------


class CursorPosition(Result):
    """Where the pointer is, in virtual-desktop pixels."""

    x: int
    y: int


class Screens(Result):
    """The screens of a device."""

    screens: list[ScreenInfo]


class StabilityReport(Result):
    """What a wait for a stable screen saw (``stable`` is ``None`` when nobody waited)."""

    stable: bool | None = None
    timed_out: bool = False
    waited_ms: int = 0
    polls: int = 0
    change_ratio_last: float | None = None


class UploadAnswer(Result):
    """The answer of the server an image was uploaded to (its body cut at 64 KiB)."""

    status: int
    headers: dict[str, str]
    body: str


class UploadResult(Result):
    """How an upload went: ``response`` is ``None`` when no answer came; ``error`` is there
    when the upload failed (no answer, or a status outside 2xx)."""

    omit_if_none: ClassVar[frozenset[str]] = frozenset({"error"})

    ok: bool
    status: int | None
    response: UploadAnswer | None
    error: str | None = None


class ScreenshotResult(Result):
    """A screenshot (``GET /screenshot`` and ``/screenshot/region``): the image, its size, the
    stability wait's report, and how to map its pixels back (``frame_id``, native size,
    ``scale``). ``image`` is ``None`` when it was only uploaded."""

    omit_if_none: ClassVar[frozenset[str]] = frozenset({"upload"})

    image: bytes | None
    format: ImageFormat
    width: int
    height: int
    stable: bool | None = None
    timed_out: bool = False
    waited_ms: int = 0
    polls: int = 0
    change_ratio_last: float | None = None
    frame_id: int
    native_width: int
    native_height: int
    scale: float
    bytes: int
    upload: UploadResult | None = None


class VariantImage(Result):
    """One variant of ``POST /screenshots``; ``ok`` false with ``error`` when it failed."""

    omit_if_none: ClassVar[frozenset[str]] = frozenset({"upload", "error"})

    name: str
    image: bytes | None
    format: ImageFormat
    width: int | None
    height: int | None
    scale_x: float
    scale_y: float
    crop: Bounds | None
    window_id: int | None
    url: str | None
    ok: bool
    upload: UploadResult | None = None
    error: str | None = None


class ScreenshotsResult(Result):
    """Every variant of one frame, in the order asked."""

    native_width: int
    native_height: int
    images: list[VariantImage]


# -- clipboard -------------------------------------------------------------------------------


class ClipboardText(Result):
    """The clipboard's text, cut at the asked ``max_bytes`` (then ``truncated``)."""

    text: str
    length: int
    truncated: bool


class SlotInfo(Result):
    """A clipboard slot without its text."""

    name: str
    length: int
    stored_at: str


class SlotList(RootModel[list[SlotInfo]]):
    """Every clipboard slot, by name."""


class SlotText(Result):
    """A clipboard slot with its text."""

    name: str
    text: str
    length: int
    stored_at: str


class SlotStored(Result):
    """A slot stored or put back on the clipboard."""

    name: str
    length: int


class CaptureEntry(Result):
    """One capture into a slot: its text, or ``ok`` false with the error."""

    omit_if_none: ClassVar[frozenset[str]] = frozenset(
        {"text", "length", "truncated", "error", "details"}
    )

    slot: str
    text: str | None = None
    length: int | None = None
    truncated: bool | None = None
    ok: bool
    error: str | None = None
    details: str | None = None


class CaptureResult(Result):
    """Every capture, in order."""

    results: list[CaptureEntry]


# -- windows and applications ----------------------------------------------------------------


class WindowList(RootModel[list[WindowInfo]]):
    """The top-level windows, bottom first."""


class FocusedWindow(RootModel[WindowInfo | None]):
    """The focused window, or ``None``."""


class DialogResult(Result):
    """The active dialog, or ``None``."""

    dialog: WindowInfo | None


class DialogClosed(Result):
    """How the dialog went away (``None``: there was none)."""

    status: Literal["ok"] = "ok"
    closed_via: Literal["escape", "close"] | None


class WindowMoved(Result):
    """The bounds a window got (``id`` as the decimal string desktopkit answers)."""

    ok: bool = True
    id: str
    bounds: Bounds


class AppOpened(Result):
    """A started program."""

    status: Literal["ok"] = "ok"
    pid: int


class AppRunning(Result):
    """Whether a program runs, and its pids."""

    running: bool
    pids: list[int]


# -- audio -----------------------------------------------------------------------------------


class AudioStatus(Result):
    """Every output device and every playing session, read fresh from the sound server."""

    devices: list[AudioDevice]
    sessions: list[AudioSession]


class AudioChanged(Result):
    """An audio change, and what the sound server shows afterwards: the ``device`` or the
    ``session`` the action changed, read back (each there only when the action was about one;
    an ``audio.move`` answers both: the session and the device it plays on now)."""

    omit_if_none: ClassVar[frozenset[str]] = frozenset({"device", "session"})

    status: Literal["ok"] = "ok"
    device: AudioDevice | None = None
    session: AudioSession | None = None


# -- the agent's own -------------------------------------------------------------------------


class ActionLogEntry(Result):
    """One action of the log: its parameters as JSON text, secrets left out."""

    timestamp: str
    action: str
    params: str
    result: str
    duration_ms: float


class ActionLogResult(RootModel[list[ActionLogEntry]]):
    """The recent actions, newest first."""


STEP_OWN_KEYS = frozenset({"name", "type", "ok", "status"})
"""A step's own keys win over same-named keys of its action's result (a restored slot's
``name``)."""


class StepOutcome(BaseModel):
    """A step's result read back from the wire: the keys its action's result spread into the
    step (the step's own keys left out), kept as they came."""

    model_config = ConfigDict(extra="allow")


class StepResult(BaseModel):
    """One step of a sequence. On the wire its action's result is spread into the step
    (``{"name", "type", "ok", ...result..., "duration_ms"}``); a result that is not an object
    goes under ``result``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None
    type: str
    ok: bool
    outcome: BaseModel | None = None
    error: str | None = None
    details: str | None = None
    duration_ms: int = 0

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        """A step as the wire has it: the spread keys of a successful step become a
        :class:`StepOutcome`."""
        if isinstance(data, dict) and data.get("ok") is True and "outcome" not in data:
            own = {k: v for k, v in data.items() if k in cls.model_fields}
            spread = {k: v for k, v in data.items() if k not in cls.model_fields}
            return {**own, "outcome": StepOutcome(**spread) if spread else None}
        return data

    @model_serializer(mode="plain")
    def _spread(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.ok:
            entry["ok"] = True
            outcome = None if self.outcome is None else to_wire(self.outcome)
            if isinstance(outcome, dict):
                entry.update({k: v for k, v in outcome.items() if k not in STEP_OWN_KEYS})
            elif outcome is not None:
                entry["result"] = outcome
        else:
            entry.update(ok=False, error=self.error, details=self.details)
        entry["duration_ms"] = self.duration_ms
        return entry


class SequenceResult(Result):
    """Every step's result, where the sequence stopped, and how long it took."""

    results: list[StepResult]
    aborted_at: str | int | None
    total_duration_ms: int

    @property
    def failed_step(self) -> StepResult | None:
        """The first step that failed, if one did (the sequence answers 200 all the same)."""
        return next((step for step in self.results if not step.ok), None)


def failed_step(wire: Any) -> tuple[str, str] | None:
    """``(error code, what failed)`` of the first failed step of a sequence's wire result;
    ``None`` when every step went well or ``wire`` is no sequence result. The action logs and
    the audit record such a sequence as failed, though its answer is a 200."""
    steps = wire.get("results") if isinstance(wire, dict) else None
    if not isinstance(steps, list):
        return None
    for index, step in enumerate(steps):
        if isinstance(step, dict) and step.get("ok") is False:
            name = step.get("name") or index
            return (str(step.get("error") or "error"),
                    f"step {name} ({step.get('type')}) failed: {step.get('details')}")  # fmt: skip
    return None


# -- power, virtual media, KVM switch ----------------------------------------------------------
# The state models are those of :mod:`remotehands.protocol.models` (the drivers answer them);
# each is a result here under its own name, with the same wire shape.


class PowerStateResult(PowerState):
    """``power.state``: the power and disk LEDs and what the device can do."""


class PowerResult(Result):
    """What a power action did, as observed: the state ``before`` the request, the state
    ``after`` (once the power LED changed, or when the watch ended), whether the power LED
    ``changed``, and ``timed_out`` when a change was awaited and did not come within the
    action's ``timeout_s``. ``expected`` is the power LED the action should lead to (``None``:
    the action does not change it, as a reset does, or the device cannot tell)."""

    action: str
    before: PowerState
    after: PowerState
    expected: bool | None
    changed: bool
    timed_out: bool
    waited_ms: float
    dry_run: bool = False
    """Nothing was done: the action is a dry run on this device (``PowerState.dry_run``; a
    desktop's restart or shutdown without a configured command), which only logged it."""


class MediaStateResult(MediaState):
    """``media.state``: the drive, the stored images, the storage left."""


class MediaImageResult(MediaImage):
    """An image stored by ``media.upload`` or ``media.fetch``."""


class MediaDriveResult(MediaDrive):
    """The drive after ``media.mount`` or ``media.eject``."""


class SwitchStateResult(SwitchState):
    """``switch.ports`` (and the answer of ``switch.set``, ``switch.beacon``): every port and
    the active one."""


class SwitchPowerResult(Result):
    """What a power action on a switch port did, as observed on the port's power LED (see
    :class:`PowerResult`; ``None`` where the port has no LED wired)."""

    port: int
    action: str
    before: bool | None
    after: bool | None
    expected: bool | None
    changed: bool
    timed_out: bool
    waited_ms: float


# -- OCR and act: the actions for AI agents -----------------------------------------------


class OcrWord(Result):
    """One word read on the screen: its text, the recogniser's confidence (0-100), its box in
    native screen pixels and the index of its line in ``lines``."""

    text: str
    confidence: float
    box: Bounds
    line: int


class OcrLine(Result):
    """One line of words: their text joined by spaces, their mean confidence, their union box."""

    text: str
    confidence: float
    box: Bounds


class OcrResult(Result):
    """The text of the screen or a region: every word and line in reading order, the whole text
    (lines joined by newlines), the region read, the upscale used and the recognition time."""

    text: str
    words: list[OcrWord]
    lines: list[OcrLine]
    region: Bounds
    upscale: float
    engine: str
    duration_ms: int


class TextMatch(Result):
    """A run of words matching a phrase: what was read, how alike it is (0..1), its box and the
    centre of the box (native pixels)."""

    text: str
    score: float
    box: Bounds
    x: int
    y: int
    confidence: float


class TextMatches(Result):
    """The matches of a phrase, best first (each at least ``min_score`` alike)."""

    text: str
    matches: list[TextMatch]
    duration_ms: int


class TextClicked(Result):
    """Which match of the phrase was clicked, and where."""

    text: str
    clicked: TextMatch
    matches: int


class TextWaited(Result):
    """The phrase appeared (``present`` true) or went away (``present`` false) after
    ``waited_ms``; ``matches`` are those seen last."""

    text: str
    present: bool
    waited_ms: int
    polls: int
    matches: list[TextMatch]


class ActResult(Result):
    """What ``act`` did and saw: each step's result, per step whether the screen changed after
    it, whether the screen settled (or ``timed_out``), the regions that changed from before the
    first step to the settled screen, and the settled screenshot."""

    omit_if_none: ClassVar[frozenset[str]] = frozenset({"screenshot"})

    results: list[StepResult]
    changed: list[bool]
    aborted_at: str | int | None
    settled: bool
    timed_out: bool
    settle_ms: int
    polls: int
    changed_regions: list[Bounds]
    screenshot: ScreenshotResult | None = None
    total_duration_ms: int
