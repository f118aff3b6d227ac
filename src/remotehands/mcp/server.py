"""The MCP server: the fleet's devices as tools for an AI agent, with the official ``mcp`` SDK.

Each tool is a few lines over the async SDK (:class:`~remotehands.client.AsyncFleetClient`); its
name is the verb of the action it calls (``click``, ``find_text``...). The tools a token cannot
use are not offered: a read-only token (or a viewer's) gets no input tools, and ``power`` and
``media`` appear only when those actions exist in the vocabulary.

Screenshots are scaled for a model (at most :data:`MAX_EDGE` pixels on the long edge by default)
and answered with their ``frame_id``; ``click``, ``move``, ``drag`` and ``scroll`` take
coordinates in that screenshot's pixels and the device maps them back. Without a ``frame_id``
they use the device's latest screenshot here. A frame taken before the screen's size changed is
refused here, and a frame the device no longer knows is refused by the device.

Errors come back as tool errors (``is_error``) holding the API's message and what is valid.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from remotehands import __version__
from remotehands.client import AsyncDevice, AsyncFleetClient
from remotehands.errors import NotFoundError, RemoteHandsError
from remotehands.protocol.actions import VERBS
from remotehands.protocol.encoding import jsonable
from remotehands.protocol.roles import role_rank

__all__ = ["INSTRUCTIONS", "MAX_EDGE", "FleetTools", "build_server"]

MAX_EDGE: Final = 1280
"""The longest side of a screenshot handed to a model, unless the call asks otherwise."""

INSTRUCTIONS: Final = """\
You have hands on the computers of a remotehands fleet. Work in a loop: LOOK, ACT, VERIFY.
1. devices: find the device (use its name or id as `device` in every other tool).
2. screenshot: look at the screen. It answers an image scaled for you and a frame_id.
3. Act with coordinates read off that image: click/move/drag/scroll take x,y in the
   screenshot's pixels (pass its frame_id; without one the latest screenshot is used).
   Prefer click_text to click a visible label or button by its text, and act to run several
   steps in one call: act answers once the screen has settled, with the new screenshot,
   the regions that changed and whether each step changed the screen.
4. Verify: look again (the act result, screenshot, find_text or wait_for_text) before the
   next step. A step that changed nothing probably missed.
"""

Device = Annotated[str, Field(description="The device's name or id (see the devices tool).")]
FrameId = Annotated[
    int | None,
    Field(description="The screenshot whose pixels x,y are in (default: the latest one)."),
]
Region = Annotated[
    list[int] | None,
    Field(description="Only this rectangle, [x, y, width, height] in screenshot pixels."),
]

_READ = ToolAnnotations(read_only_hint=True)
_INPUT = ToolAnnotations(read_only_hint=False, destructive_hint=False)
_POWER_ACTIONS: Final = ("state", "on", "off", "off_hard", "reset_hard", "click", "restart",
                         "shutdown")  # fmt: skip
_MEDIA_ACTIONS: Final = {"state": "media_state", "fetch": "media_fetch", "mount": "media_mount",
                         "eject": "media_eject", "remove": "media_remove"}  # fmt: skip


@dataclass
class _Frame:
    scale: float
    native: tuple[int, int]


@dataclass
class _Screen:
    """What this server knows of one device's screen: its native size and the frames it gave."""

    native: tuple[int, int] | None = None
    frames: dict[int, _Frame] = field(default_factory=dict)
    latest: int | None = None
    fresh_from: int | None = None
    """The first frame taken after the last change of the screen's size."""


def _json(value: Any) -> str:
    return orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2).decode()


def _answer(value: Any, image: tuple[bytes, str] | None = None) -> CallToolResult:
    """A tool answer: the value as JSON text (and structured), after the image if there is one."""
    content: list[TextContent | ImageContent] = []
    if image is not None:
        data, fmt = image
        content.append(
            ImageContent(
                type="image", data=base64.b64encode(data).decode("ascii"), mime_type=f"image/{fmt}"
            )
        )
    wire = jsonable(value)
    content.append(TextContent(type="text", text=_json(wire)))
    structured = wire if isinstance(wire, dict) else {"result": wire}
    return CallToolResult(content=content, structured_content=structured)


class FleetTools:
    """The tools over one fleet client, and what they remember of each device's screen."""

    def __init__(self, fleet: AsyncFleetClient, *, control: bool) -> None:
        self.fleet = fleet
        self.control = control
        """Whether the token may act on devices (not read-only, operator or above)."""
        self._devices: dict[str, AsyncDevice] = {}
        self._screens: dict[str, _Screen] = {}

    # -- plumbing -----------------------------------------------------------------------------

    async def _device(self, ref: str) -> AsyncDevice:
        device = self._devices.get(ref)
        if device is None:
            device = self.fleet.device(ref)
            try:
                await device.resolve()
            except NotFoundError as err:
                raise ToolError(await self._unknown(ref)) from err
            except RemoteHandsError as err:
                raise ToolError(f"{err.code}: {err.details}") from err
            self._devices[ref] = device
        return device

    async def _unknown(self, ref: str) -> str:
        try:
            devices = await self.fleet.devices()
        except RemoteHandsError:
            devices = []
        names = ", ".join(f"{d.get('name')} ({d.get('id')}, {d.get('status')})" for d in devices)
        return f"not_found: no device is named {ref!r} or has that id; the devices are: " + (
            names or "none"
        )

    async def _call(self, ref: str, verb: str, **params: Any) -> Any:
        device = await self._device(ref)
        try:
            return await device.call(verb, **params)
        except RemoteHandsError as err:
            raise ToolError(f"{err.code}: {err.details}") from err

    def _screen(self, ref: str) -> _Screen:
        return self._screens.setdefault(ref, _Screen())

    def _remember(self, ref: str, shot: Mapping[str, Any]) -> None:
        screen = self._screen(ref)
        native = (int(shot["native_width"]), int(shot["native_height"]))
        frame_id = int(shot["frame_id"])
        if screen.native is not None and screen.native != native:
            screen.frames.clear()  # the resolution changed: every earlier frame is stale
            screen.fresh_from = frame_id
        screen.native = native
        screen.frames[frame_id] = _Frame(float(shot["scale"]), native)
        screen.latest = frame_id

    def _frame(self, ref: str, frame_id: int | None) -> int | None:
        """The frame to map coordinates by: the one named, else the latest; a frame from before
        a resolution change is refused (one the device forgot, the device refuses)."""
        screen = self._screen(ref)
        if frame_id is None:
            return screen.latest
        if screen.fresh_from is not None and frame_id < screen.fresh_from:
            raise ToolError(
                f"stale_frame: frame {frame_id} was taken before the screen changed size (now "
                f"{screen.native[0]}x{screen.native[1]}); take a new screenshot and use its "
                f"frame_id ({screen.latest} is the latest)"
                if screen.native
                else f"stale_frame: frame {frame_id} is stale; take a new screenshot"
            )
        return frame_id

    async def _scale_for(self, ref: str, max_edge: int) -> float:
        screen = self._screen(ref)
        if screen.native is None:
            screens = await self._call(ref, "screens")
            first = (screens.get("screens") or [{}])[0]
            screen.native = (int(first.get("width", 0)), int(first.get("height", 0)))
        longest = max(screen.native)
        return 1.0 if longest <= max_edge or longest == 0 else max_edge / longest

    def _in_frame(self, ref: str, value: Any) -> Any:
        """Text matches with their points also in the latest screenshot's pixels."""
        screen = self._screen(ref)
        if screen.latest is None or not isinstance(value, dict):
            return value
        scale = screen.frames[screen.latest].scale
        matches = value.get("matches")
        for match in matches if isinstance(matches, list) else [value.get("clicked")]:
            if isinstance(match, dict) and "x" in match:
                match["frame_x"], match["frame_y"] = (
                    int(match["x"] * scale),
                    int(match["y"] * scale),
                )
        value["frame_id"] = screen.latest
        return value

    def _native_region(self, ref: str, region: list[int] | None) -> dict[str, int]:
        if region is None:
            return {}
        if len(region) != 4:
            raise ToolError("invalid: region is [x, y, width, height]")
        screen = self._screen(ref)
        scale = screen.frames[screen.latest].scale if screen.latest is not None else 1.0
        x, y, width, height = (round(v / scale) for v in region)
        return {"x": x, "y": y, "width": max(1, width), "height": max(1, height)}

    # -- the tools ----------------------------------------------------------------------------

    async def devices(
        self,
        status: Annotated[str | None, Field(description="online or offline")] = None,
        search: Annotated[str | None, Field(description="Part of the name")] = None,
    ) -> CallToolResult:
        """List the fleet's devices: id, name, status (online/offline), tags and capabilities.
        Use a device's name or id as `device` in the other tools."""
        try:
            found = await self.fleet.devices(status=status, search=search)
        except RemoteHandsError as err:
            raise ToolError(f"{err.code}: {err.details}") from err
        keys = ("id", "name", "status", "tags", "capabilities", "screens", "last_seen_at")
        return _answer({"devices": [{k: d.get(k) for k in keys if k in d} for d in found]})

    async def screenshot(
        self,
        device: Device,
        max_edge: Annotated[int, Field(ge=64, le=8192, description="Longest side in px")] = 1280,
        region: Region = None,
        wait_stable: Annotated[bool, Field(description="Wait until the screen is still")] = False,
    ) -> CallToolResult:
        """LOOK: the device's screen as an image scaled to at most max_edge pixels, with its
        frame_id and scale. Coordinates you read off this image are what click, move, drag and
        scroll take (with this frame_id)."""
        scale = await self._scale_for(device, max_edge)
        options: dict[str, Any] = {"scale": round(scale, 6), "wait_stable": wait_stable or None}
        if region is not None:
            native = self._native_region(device, region)
            shot = await self._call(device, "screenshot_region", **native, **options)
        else:
            shot = await self._call(device, "screenshot", **options)
            self._remember(device, shot)
        meta = {k: v for k, v in shot.items() if k != "image"}
        return _answer(meta, (shot["image"], shot.get("format", "jpeg")))

    async def click(
        self,
        device: Device,
        x: int,
        y: int,
        frame_id: FrameId = None,
        button: Literal["left", "right", "middle"] = "left",
        double: bool = False,
    ) -> CallToolResult:
        """ACT: click at x,y of the screenshot (frame_id). Then verify with a screenshot or use
        act, which answers the settled screen."""
        verb = "double_click" if double else "click"
        frame = self._frame(device, frame_id)
        return _answer(await self._call(device, verb, x=x, y=y, button=button, frame_id=frame))

    async def move(
        self, device: Device, x: int, y: int, frame_id: FrameId = None
    ) -> CallToolResult:
        """ACT: move the pointer to x,y of the screenshot (frame_id), e.g. to hover."""
        frame = self._frame(device, frame_id)
        return _answer(await self._call(device, "move", x=x, y=y, frame_id=frame))

    async def drag(
        self,
        device: Device,
        from_x: int,
        from_y: int,
        to_x: int,
        to_y: int,
        frame_id: FrameId = None,
        duration_ms: int = 200,
    ) -> CallToolResult:
        """ACT: press at from_x,from_y, move to to_x,to_y, release (screenshot pixels)."""
        frame = self._frame(device, frame_id)
        result = await self._call(device, "drag", from_x=from_x, from_y=from_y, to_x=to_x,
                                  to_y=to_y, frame_id=frame, duration_ms=duration_ms)  # fmt: skip
        return _answer(result)

    async def scroll(
        self,
        device: Device,
        delta_y: Annotated[int, Field(description="Wheel notches; positive scrolls down")] = 0,
        delta_x: int = 0,
        x: int | None = None,
        y: int | None = None,
        frame_id: FrameId = None,
    ) -> CallToolResult:
        """ACT: scroll by wheel notches at x,y of the screenshot (or where the pointer is)."""
        frame = self._frame(device, frame_id) if x is not None else None
        result = await self._call(device, "scroll", x=x, y=y, delta_x=delta_x, delta_y=delta_y,
                                  frame_id=frame)  # fmt: skip
        return _answer(result)

    async def type(self, device: Device, text: str) -> CallToolResult:
        """ACT: type text into the focused field (any Unicode). Click the field first."""
        return _answer(await self._call(device, "type", text=text))

    async def key(
        self,
        device: Device,
        keys: Annotated[str, Field(description="A key or combination: Return, ctrl+s, alt+F4")],
    ) -> CallToolResult:
        """ACT: press a key or a key combination."""
        return _answer(await self._call(device, "key", keys=keys))

    async def clipboard(
        self,
        device: Device,
        text: Annotated[str | None, Field(description="Set the clipboard to this")] = None,
    ) -> CallToolResult:
        """Read the clipboard, or set it when text is given."""
        if text is None:
            return _answer(await self._call(device, "clipboard_get"))
        return _answer(await self._call(device, "clipboard_set", text=text))

    async def windows(
        self,
        device: Device,
        action: Literal["list", "focus", "close"] = "list",
        window_id: int | str | None = None,
    ) -> CallToolResult:
        """The top-level windows (id, title, process, bounds, focused); focus or close one."""
        if action == "list":
            return _answer({"windows": await self._call(device, "windows")})
        if window_id is None:
            raise ToolError(f"invalid: windows {action} needs window_id (list the windows)")
        verb = "focus_window" if action == "focus" else "close_window"
        return _answer(await self._call(device, verb, id=window_id))

    async def apps(
        self,
        device: Device,
        action: Literal["open", "running", "close"],
        name: Annotated[
            str | None, Field(description="open: the program; running: its name")
        ] = None,
        args: list[str] | None = None,
        window_id: int | str | None = None,
    ) -> CallToolResult:
        """Open a program, ask whether one runs (by executable name), or close its window."""
        if action == "close":
            if window_id is None:
                raise ToolError("invalid: apps close needs window_id (see the windows tool)")
            return _answer(await self._call(device, "close_app", window_id=window_id))
        if not name:
            raise ToolError(f"invalid: apps {action} needs name")
        if action == "open":
            return _answer(await self._call(device, "open_app", path=name, args=args or []))
        return _answer(await self._call(device, "app_running", name=name))

    async def act(
        self,
        device: Device,
        steps: Annotated[
            list[dict[str, Any]],
            Field(
                description='Steps in order, each {"type": action, ...}: {"type": "click", "x": '
                '10, "y": 20}, {"type": "type", "text": "hi"}, {"type": "key", "keys": '
                '"Return"}, {"type": "click_text", "text": "OK"}, {"type": "sleep", "ms": 100}. '
                "x,y are in the latest screenshot's pixels."
            ),
        ],
        max_edge: Annotated[int, Field(ge=64, le=8192)] = 1280,
        timeout_ms: Annotated[int, Field(ge=0, le=120_000)] = 5000,
    ) -> CallToolResult:
        """ACT and VERIFY in one call: run the steps, wait until the screen settles (no fixed
        sleep), and get the settled screenshot (new frame_id), the regions that changed
        (frame_regions: in that screenshot's pixels), each step's result and whether the
        screen changed after each step."""
        screen = self._screen(device)
        frame = screen.latest
        prepared = []
        for step in steps:
            kind = str(step.get("type", ""))
            spec = VERBS.get(kind.replace("-", "_"))
            wire = spec.name if spec is not None else kind
            entry = {**step, "type": wire}
            if (
                frame is not None
                and "x" in step
                and "frame_id" not in step
                and wire.startswith(("mouse.", "ocr."))
            ):
                entry["frame_id"] = frame
            prepared.append(entry)
        scale = await self._scale_for(device, max_edge)
        result = await self._call(device, "act", steps=prepared, scale=round(scale, 6),
                                  timeout_ms=timeout_ms)  # fmt: skip
        shot = result.pop("screenshot", None)
        image = None
        if isinstance(shot, dict) and isinstance(shot.get("image"), bytes):
            self._remember(device, shot)
            image = (shot["image"], shot.get("format", "jpeg"))
            result["screenshot"] = {k: v for k, v in shot.items() if k != "image"}
            # the boxes also in the pixels of the image the model sees
            factor = float(shot["scale"])
            result["frame_regions"] = [
                {k: int(v * factor) for k, v in box.items()}
                for box in result.get("changed_regions", [])
            ]
        return _answer(result, image)

    async def find_text(
        self, device: Device, text: str, region: Region = None, min_score: float = 0.8
    ) -> CallToolResult:
        """LOOK for a phrase on the screen by OCR (case-insensitive, tolerant of OCR slips):
        each match with its box, its centre x,y (native) and frame_x,frame_y in the latest
        screenshot's pixels. Not found: the closest text seen."""
        native = self._native_region(device, region)
        found = await self._call(device, "find_text", text=text, min_score=min_score, **native)
        return _answer(self._in_frame(device, found))

    async def click_text(
        self,
        device: Device,
        text: str,
        index: Annotated[int | None, Field(description="Which match when several")] = None,
        double: bool = False,
    ) -> CallToolResult:
        """ACT: find a phrase (a button or label) on the screen by OCR and click its centre. An
        ambiguous phrase is refused with the matches; pass index to pick one."""
        clicked = await self._call(device, "click_text", text=text, index=index, double=double)
        return _answer(self._in_frame(device, clicked))

    async def wait_for_text(
        self,
        device: Device,
        text: str,
        gone: Annotated[bool, Field(description="Wait until it is no longer there")] = False,
        timeout_ms: Annotated[int, Field(ge=0, le=300_000)] = 10_000,
    ) -> CallToolResult:
        """VERIFY: wait until a phrase appears on the screen (or, with gone, disappears)."""
        waited = await self._call(device, "wait_for_text", text=text, gone=gone,
                                  timeout_ms=timeout_ms)  # fmt: skip
        return _answer(self._in_frame(device, waited))

    async def power(
        self,
        device: Device,
        action: Annotated[
            str,
            Field(description="state, on, off, off_hard, reset_hard, click, restart or shutdown"),
        ] = "state",
        button: str | None = None,
    ) -> CallToolResult:
        """The power of a KVM-attached machine: its state, or press its buttons (the answer
        says the state before and after)."""
        verb = f"power_{action}"
        if action not in _POWER_ACTIONS or verb not in VERBS:
            valid = [a for a in _POWER_ACTIONS if f"power_{a}" in VERBS]
            raise ToolError(f"invalid: power action {action!r}; valid: {', '.join(valid)}")
        params = {"button": button} if button is not None else {}
        return _answer(await self._call(device, verb, **params))

    async def media(
        self,
        device: Device,
        action: Annotated[str, Field(description="state, fetch, mount, eject or remove")] = "state",
        name: str | None = None,
        url: str | None = None,
    ) -> CallToolResult:
        """Virtual media of a KVM: its state, fetch an image from a URL, mount, eject, remove."""
        verb = _MEDIA_ACTIONS.get(action)
        if verb is None or verb not in VERBS:
            valid = [a for a, v in _MEDIA_ACTIONS.items() if v in VERBS]
            raise ToolError(f"invalid: media action {action!r}; valid: {', '.join(valid)}")
        params = {k: v for k, v in {"name": name, "url": url}.items() if v is not None}
        return _answer(await self._call(device, verb, **params))


_Tool = Callable[..., Awaitable[CallToolResult]]


def _offered(tools: FleetTools) -> list[tuple[str, _Tool, ToolAnnotations]]:
    """The tools this token may use, each with its hints."""
    read: list[tuple[str, _Tool]] = [
        ("devices", tools.devices), ("screenshot", tools.screenshot),
        ("windows", tools.windows), ("apps", tools.apps), ("find_text", tools.find_text),
        ("wait_for_text", tools.wait_for_text),
    ]  # fmt: skip
    control: list[tuple[str, _Tool]] = [
        ("click", tools.click), ("move", tools.move), ("drag", tools.drag),
        ("scroll", tools.scroll), ("type", tools.type), ("key", tools.key),
        ("clipboard", tools.clipboard), ("act", tools.act), ("click_text", tools.click_text),
    ]  # fmt: skip
    offered = [(n, t, _READ) for n, t in read]
    if tools.control:
        offered += [(n, t, _INPUT) for n, t in control]
    power = [a for a in _POWER_ACTIONS if f"power_{a}" in VERBS]
    if power:  # a read-only token may still read the state
        offered.append(("power", tools.power, _INPUT if tools.control else _READ))
    if any(v in VERBS for v in _MEDIA_ACTIONS.values()) and tools.control:
        offered.append(("media", tools.media, _INPUT))
    return offered


def build_server(fleet: AsyncFleetClient, me: Mapping[str, Any]) -> MCPServer:
    """The MCP server for the token ``me`` describes (``GET /v1/auth/me``): only the tools it
    may use."""
    control = not me.get("read_only", False) and role_rank(str(me.get("role"))) >= role_rank(
        "operator"
    )
    tools = FleetTools(fleet, control=control)
    server = MCPServer(
        name="remotehands", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    for name, tool, hints in _offered(tools):
        server.add_tool(tool, name=name, description=tool.__doc__, annotations=hints,
                        structured_output=False)  # fmt: skip
    return server
