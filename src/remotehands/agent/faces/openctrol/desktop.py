"""The Openctrol face's sockets: ``/ws/desktop`` (frames out, input in) and the legacy input
socket ``/api/v1/rd/session``.

``/ws/desktop`` is one more consumer of the device's frame stream
(:mod:`remotehands.agent.framesource`): each viewer subscribes to the source of the selected
monitor with a drop-oldest queue of 10 frames (the reference's), so the source captures only
while somebody watches, sends only frames that changed, and a slow viewer loses its oldest
frames without slowing the others. Frames go out as OFRA messages (16-byte little-endian
header, then the JPEG). Selecting another monitor (``monitor_select`` here, or
``POST /api/v1/rd/monitor``) moves every viewer to that monitor's source.

Input becomes actions of the vocabulary, run by the device's dispatcher:

- ``pointer_move`` ``{dx, dy}`` moves from where the pointer is; ``{absolute: true, x, y}``
  places it on the selected monitor, 0-65535 across its width and height;
- ``pointer_button`` ``{button, action: down|up}``, ``pointer_wheel`` ``{delta_x, delta_y}``
  in Windows wheel units (120 a notch; positive ``delta_y`` scrolls up, as a wheel turned
  away from the user does);
- ``key`` ``{key_code, action, ctrl, alt, shift, win}``: a Windows virtual-key code, its
  modifiers pressed before it goes down and released after it comes up, as the reference
  does; ``text`` ``{text, ...modifiers}`` types the text with those modifiers held;
- ``monitor_select`` ``{monitor_id}``; ``quality`` is ignored, as in the reference.

At most 1,000 input messages a second are carried out (a sliding window; the rest are
dropped); a message over 64 KiB closes the socket with 1009 (message too big); a malformed
message is logged and ignored. The socket closes (1000, "Session expired") when its session
expires or is ended.

The legacy socket takes the API key in a header and input only, in the reference's older
shape: ``{"type": "pointer", "event": "move"|"click"|"scroll", "dx", "dy", "button"}`` and
``{"type": "keyboard", "keys": ["CTRL", "ALT", "DEL"]}``; it answers what it cannot read
with ``{"type": "error", "message": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.framesource import FrameSources, FrameStream, JpegEncoder
from remotehands.drivers.openctrol.client import CODE_BY_VK, Folded, ofra_header
from remotehands.errors import RemoteHandsError
from remotehands.protocol.models import ScreenInfo
from remotehands.protocol.streams import Frame

__all__ = [
    "MAX_INPUT_PER_S",
    "MAX_MESSAGE",
    "QUEUE_DEPTH",
    "InputTranslator",
    "Monitors",
    "Viewer",
    "legacy_keys",
]

log = logging.getLogger(__name__)

MAX_INPUT_PER_S = 1000
MAX_MESSAGE = 64 * 1024
SCREENS_FRESH_S = 1.0
"""How long the screens' geometry is trusted for pointer moves before it is read again."""
QUEUE_DEPTH = 10
"""Frames a viewer may fall behind before its oldest are dropped (the reference's 10)."""
_INPUT_TYPES = frozenset({"pointer_move", "pointer_button", "pointer_wheel", "key", "text"})
_MODIFIERS = (
    ("ctrl", "ControlLeft"),
    ("alt", "AltLeft"),
    ("shift", "ShiftLeft"),
    ("win", "MetaLeft"),
)
_LEGACY_NAMES = {
    "TAB": "Tab",
    "ENTER": "Enter",
    "ESC": "Escape",
    "ESCAPE": "Escape",
    "SPACE": "Space",
    "BACKSPACE": "Backspace",
    "DEL": "Delete",
    "DELETE": "Delete",
    "INSERT": "Insert",
    "HOME": "Home",
    "END": "End",
    "PAGEUP": "PageUp",
    "PAGEDOWN": "PageDown",
    "UP": "ArrowUp",
    "DOWN": "ArrowDown",
    "LEFT": "ArrowLeft",
    "RIGHT": "ArrowRight",
    **{f"F{n}": f"F{n}" for n in range(1, 13)},
}
_LEGACY_MODIFIERS = {
    "CTRL": "ControlLeft",
    "ALT": "AltLeft",
    "SHIFT": "ShiftLeft",
    "WIN": "MetaLeft",
}


def monitor_id(screen: ScreenInfo) -> str:
    """The Openctrol id of a screen: ``DISPLAY1`` for screen 0, as Windows names them."""
    return f"DISPLAY{screen.id + 1}"


class Monitors:
    """The device's screens as Openctrol monitors, and the one selected for viewers and
    absolute pointer moves (shared by every socket of the face)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._known: tuple[float, list[ScreenInfo]] = (-SCREENS_FRESH_S, [])
        self.selected = 0
        """The selected screen's id."""
        self.changed = asyncio.Event()
        """Pulsed (set, then replaced) when the selection changes."""

    async def screens(self) -> list[ScreenInfo]:
        """The device's screens, read fresh."""
        result = await self._dispatcher.call("screens")
        screens: list[ScreenInfo] = result.screens  # type: ignore[attr-defined]  # a Screens
        return screens

    async def current(self) -> ScreenInfo:
        """The selected screen (the first one if the selected one went away); the screens are
        read at most once a second here, as absolute moves come by the hundred."""
        now = time.monotonic()
        read_at, screens = self._known
        if now - read_at >= SCREENS_FRESH_S or not screens:
            screens = await self.screens()
            self._known = (now, screens)
        return next((s for s in screens if s.id == self.selected), screens[0])

    async def select(self, wanted: str) -> ScreenInfo | None:
        """Select the monitor ``wanted`` (``DISPLAY2``); ``None`` when there is none such."""
        for screen in await self.screens():
            if monitor_id(screen).lower() == wanted.strip().lower():
                if screen.id != self.selected:
                    self.selected = screen.id
                    changed, self.changed = self.changed, asyncio.Event()
                    changed.set()
                return screen
        return None


def legacy_keys(names: list[Any]) -> tuple[list[str], list[str]]:
    """The modifiers and keys (W3C codes) of a legacy ``keyboard`` message; unknown names are
    logged and skipped, as the reference does."""
    modifiers: list[str] = []
    keys: list[str] = []
    for raw in names:
        name = str(raw).upper()
        if name in _LEGACY_MODIFIERS:
            modifiers.append(_LEGACY_MODIFIERS[name])
        elif name in _LEGACY_NAMES:
            keys.append(_LEGACY_NAMES[name])
        elif len(name) == 1 and ("A" <= name <= "Z" or "0" <= name <= "9"):
            keys.append(f"Key{name}" if name.isalpha() else f"Digit{name}")
        else:
            log.warning("openctrol: unknown key name %r in a keyboard message: skipped", raw)
    return modifiers, keys


class InputTranslator:
    """Carries out Openctrol input messages as actions of the device's dispatcher."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        monitors: Monitors,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dispatcher = dispatcher
        self.monitors = monitors
        self._clock = clock
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        """Whether one more input message fits in the last second's 1,000."""
        now = self._clock()
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()
        if len(self._times) >= MAX_INPUT_PER_S:
            return False
        self._times.append(now)
        return True

    async def handle(self, message: Folded) -> None:
        """One message of ``/ws/desktop``; raises what the device raised."""
        kind = str(message.get("type", ""))
        if kind in _INPUT_TYPES and not self.allow():
            log.warning("openctrol: over %d input events a second: dropped", MAX_INPUT_PER_S)
            return
        if kind == "pointer_move":
            await self._move(message)
        elif kind == "pointer_button":
            button, action = str(message.get("button", "")).lower(), message.get("action")
            if button in ("left", "right", "middle") and action in ("down", "up"):
                await self.run(f"mouse.{action}", {"button": button})
        elif kind == "pointer_wheel":
            await self.wheel(_int(message.get("delta_x", 0)), _int(message.get("delta_y", 0)))
        elif kind == "key":
            await self._key(message)
        elif kind == "text":
            text = message.get("text")
            if isinstance(text, str) and text:
                await self.with_modifiers(
                    _modifiers(message), self.run("keyboard.type", {"text": text})
                )
        elif kind == "monitor_select":
            wanted = message.get("monitor_id")
            if isinstance(wanted, str) and wanted and await self.monitors.select(wanted) is None:
                log.warning("openctrol: monitor_select of unknown monitor %r: ignored", wanted)
        # quality and unknown types are ignored, as in the reference

    async def run(self, action: str, params: dict[str, Any]) -> None:
        """Run one action of the vocabulary on the device."""
        await self.dispatcher.run(action, params)

    async def move_by(self, dx: int, dy: int) -> None:
        """Move the pointer by ``(dx, dy)`` pixels, kept on the screen."""
        where = await self.dispatcher.call("screenshot.cursor")
        screen = await self.monitors.current()
        x = getattr(where, "x", 0) + dx
        y = getattr(where, "y", 0) + dy
        x = max(screen.x, min(screen.x + screen.width - 1, x))
        y = max(screen.y, min(screen.y + screen.height - 1, y))
        await self.run("mouse.move", {"x": x, "y": y})

    async def wheel(self, delta_x: int, delta_y: int) -> None:
        """Scroll by Windows wheel units (120 a notch, positive ``delta_y`` up)."""
        notches_y = -_notches(delta_y)
        notches_x = _notches(delta_x)
        if notches_x or notches_y:
            await self.run("mouse.scroll", {"delta_x": notches_x, "delta_y": notches_y})

    async def with_modifiers(self, modifiers: list[str], action: Awaitable[None]) -> None:
        """Hold ``modifiers`` around ``action``; never leaves one held."""
        pressed: list[str] = []
        try:
            for key in modifiers:
                await self.run("keyboard.down", {"key": key})
                pressed.append(key)
            await action
        finally:
            for key in reversed(pressed):
                await self.run("keyboard.up", {"key": key})

    async def _move(self, message: Folded) -> None:
        if message.get("absolute") is True:
            screen = await self.monitors.current()
            nx = max(0, min(65535, _int(message.get("x", 0))))
            ny = max(0, min(65535, _int(message.get("y", 0))))
            # Integer arithmetic: 0..65535 spans the monitor, the last value its last pixel.
            x = screen.x + min(screen.width - 1, nx * screen.width // 65535)
            y = screen.y + min(screen.height - 1, ny * screen.height // 65535)
            await self.run("mouse.move", {"x": x, "y": y})
            return
        dx, dy = _int(message.get("dx", 0)), _int(message.get("dy", 0))
        if dx or dy:
            await self.move_by(max(-32767, min(32767, dx)), max(-32767, min(32767, dy)))

    async def _key(self, message: Folded) -> None:
        vk = _int(message.get("key_code", -1))
        code = CODE_BY_VK.get(vk)
        if code is None:
            log.warning("openctrol: key_code %r has no key here: ignored", message.get("key_code"))
            return
        modifiers = [m for m in _modifiers(message) if m != code]
        if message.get("action", "down") == "up":
            await self.run("keyboard.up", {"key": code})
            for key in reversed(modifiers):
                await self.run("keyboard.up", {"key": key})
        else:
            for key in modifiers:
                await self.run("keyboard.down", {"key": key})
            await self.run("keyboard.down", {"key": code})


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return round(value)


def _notches(units: int) -> int:
    if units == 0:
        return 0
    notches = round(units / 120)
    return notches if notches else (1 if units > 0 else -1)


def _modifiers(message: Folded) -> list[str]:
    return [code for name, code in _MODIFIERS if message.get(name) is True]


class Viewer:
    """One ``/ws/desktop`` client: frames of the selected monitor out, input in."""

    def __init__(
        self,
        websocket: WebSocket,
        frames: FrameSources | None,
        translator: InputTranslator,
        *,
        on_frame: Callable[[], None],
        on_capture_error: Callable[[RemoteHandsError], None],
    ) -> None:
        self.websocket = websocket
        self.frames = frames
        self.translator = translator
        self.on_frame = on_frame
        self.on_capture_error = on_capture_error
        self.sent = 0
        self._dropped = 0
        self.stream: FrameStream | None = None

    async def send_frames(self) -> None:
        """Send frames of the selected monitor until cancelled; follow monitor changes; retry
        a capture that failed (the health route reports repeated failures as degraded)."""
        if self.frames is None:
            await asyncio.Event().wait()
            return
        monitors = self.translator.monitors
        backoff = 0.2
        while True:
            changed = monitors.changed
            source = self.frames.get(monitors.selected)
            try:
                async with source.subscribe(encoder=JpegEncoder(75), depth=QUEUE_DEPTH) as stream:
                    self.stream = stream
                    await self._forward(stream, changed)
                self._dropped += stream.dropped
                self.stream = None
                backoff = 0.2
            except StopAsyncIteration:
                return  # the source was closed: the agent is stopping
            except RemoteHandsError as err:
                self.stream = None
                self.on_capture_error(err)
                await asyncio.sleep(backoff)  # the device failed: try again, more slowly
                backoff = min(5.0, backoff * 2)

    async def _forward(self, stream: FrameStream, changed: asyncio.Event) -> None:
        """Send the stream's frames until the monitor selection changes."""
        waiter = asyncio.ensure_future(changed.wait())
        step: asyncio.Future[Frame] | None = None
        try:
            while not changed.is_set():
                step = asyncio.ensure_future(anext(stream))
                await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return
                frame = step.result()
                step = None
                await self.websocket.send_bytes(ofra_header(frame.width, frame.height) + frame.data)
                self.sent += 1
                self.on_frame()
        finally:
            for pending in (waiter, step):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await pending

    @property
    def dropped(self) -> int:
        """Frames this viewer lost because it read too slowly."""
        return self._dropped + (self.stream.dropped if self.stream is not None else 0)

    async def receive_input(self) -> None:
        """Carry out input messages until the client leaves or sends one too big."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            raw = data.encode() if isinstance(data, str) else message.get("bytes") or b""
            if len(raw) > MAX_MESSAGE:
                log.warning(
                    "openctrol: a %d-byte message is over %d: closing the socket",
                    len(raw),
                    MAX_MESSAGE,
                )
                await self.websocket.close(
                    1009, f"Message size {len(raw)} bytes exceeds limit of {MAX_MESSAGE} bytes"
                )
                return
            if data is None:
                continue  # binary input is not part of the protocol
            await handle_json(data, self.translator.handle)


async def handle_json(text: str, handler: Callable[[Folded], Awaitable[None]]) -> str | None:
    """Parse one JSON message and hand it to ``handler``; a malformed message or one the
    device refused is logged and answered with what went wrong (``None``: it went well)."""
    try:
        parsed = orjson.loads(text)
        if not isinstance(parsed, dict):
            raise TypeError("a message must be a JSON object")
        await handler(Folded(parsed))
    except orjson.JSONDecodeError:
        log.warning("openctrol: a message is not valid JSON: ignored")
        return "Invalid JSON format"
    except TypeError as err:
        log.warning("openctrol: a malformed message was ignored: %s", err)
        return f"Invalid message: {err}"
    except ValueError as err:
        log.warning("openctrol: a message was ignored: %s", err)
        return str(err)
    except RemoteHandsError as err:
        log.warning("openctrol: input failed on the device: %s", err.details)
        return "Error processing message"
    return None


async def serve_legacy(websocket: WebSocket, translator: InputTranslator) -> None:
    """The legacy input socket, once accepted: input only, errors answered as messages."""

    async def handle(message: Folded) -> None:
        kind = message.get("type")
        if kind == "pointer":
            await _legacy_pointer(translator, message)
        elif kind == "keyboard":
            keys = message.get("keys")
            if not isinstance(keys, list):
                raise TypeError("a keyboard message needs a keys list")
            modifiers, names = legacy_keys(keys)
            await translator.with_modifiers(modifiers, _tap(translator, names))
        elif kind is None:
            raise TypeError("missing 'type' field")
        else:
            raise ValueError(f"Unknown message type: {kind}")

    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            text = await websocket.receive_text()
            if len(text) > MAX_MESSAGE:
                await websocket.close(1009, "Message too big")
                return
            if translator.allow():
                error = await handle_json(text, handle)
                if error is not None:
                    await websocket.send_text(
                        orjson.dumps({"type": "error", "message": error}).decode()
                    )


async def _tap(translator: InputTranslator, keys: list[str]) -> None:
    pressed: list[str] = []
    try:
        for key in keys:
            await translator.run("keyboard.down", {"key": key})
            pressed.append(key)
    finally:
        for key in reversed(pressed):
            await translator.run("keyboard.up", {"key": key})


async def _legacy_pointer(translator: InputTranslator, message: Folded) -> None:
    event = message.get("event")
    if event == "move":
        await translator.move_by(_int(message.get("dx", 0)), _int(message.get("dy", 0)))
    elif event == "click":
        button = str(message.get("button", "")).lower()
        if button in ("left", "right", "middle"):
            await translator.run("mouse.down", {"button": button})
            await translator.run("mouse.up", {"button": button})
    elif event == "scroll":
        await translator.wheel(_int(message.get("dx", 0)), _int(message.get("dy", 0)))
    else:
        log.warning("openctrol: unknown pointer event %r: ignored", event)
