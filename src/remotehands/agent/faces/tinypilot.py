"""The TinyPilot-compatible face: TinyPilot's REST API (``/api/v1``) over any device.

Routes, as TinyPilot Pro serves them (``reference/tinypilot-rest-api.md`` and the TinyPilot
part of ``tinypilot-openctrol-x11-notes.md``):

- ``POST /api/v1/auth`` -> ``{"token": "<uuid>"}``, a token valid until the agent restarts.
  Handed out without credentials only to a loopback client, or to anyone when the operator
  opened the face (``--tinypilot-open``, the face setting ``open = true``), as TinyPilot's
  passwordless mode does; else only to a client that shows a static key. A request carrying an
  ``Origin`` header is refused (403), as TinyPilot refuses it, so that no web page can fetch a
  token through a visitor's browser. A client behind a proxy (``Forwarded``,
  ``X-Forwarded-For``) is never taken for a loopback one.
- ``GET /api/v1/screenshot`` -> the screen as JPEG, or 204 with no body when the device has
  no video signal.
- ``POST /api/v1/keystroke`` ``{code, shiftLeft, ..., metaRight}``: the key pressed with the
  modifiers held, then everything released, as TinyPilot's HID reports do; a modifier sent
  alone (its code and its one flag) stays held until the next keystroke, as TinyPilot's lone
  modifier report does.
- ``POST /api/v1/mouseEvent`` ``{buttons, relativeX, relativeY, verticalWheelDelta,
  horizontalWheelDelta}``: an absolute pointer (0.0-1.0 of the screen, the first to the last
  pixel), the buttons bitmask (1 left, 2 right, 4 middle) pressed or released by difference
  with the last event, a wheel notch (vertical -1 is up).
- ``POST /api/v1/paste`` ``{text, language}``: the text typed, once every character was found
  on the layout of ``language`` (en-US, en-GB, de-DE; any other tag is en-US, as TinyPilot
  does); unsupported characters are a 400 naming them all.

Every other request needs ``Authorization: Bearer X``: a token of ``/api/v1/auth``, a token of
the native face, or a static key (the agent's password, TinyPilot Pro's "API key"). Missing
credentials are 401, wrong ones 403. Malformed requests are 400 and input that cannot be
forwarded 500, each with a ``text/plain`` message in TinyPilot's words (``Failed to forward
keystroke: ...``); unknown routes answer Flask's HTML 404 and 405 pages. Every action goes
through the device's dispatcher, under its lock, into its action log.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pydantic
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from remotehands.agent.faces.base import Face, FaceContext
from remotehands.drivers.tinypilot.layouts import LAYOUTS, unsupported
from remotehands.errors import (
    AuthError,
    ConfigError,
    DeviceError,
    RateLimitedError,
    RemoteHandsError,
)

__all__ = ["KEY_CODES", "MAX_TOKENS", "TinyPilotFaceSettings", "tinypilot_face"]

log = logging.getLogger(__name__)

MAX_TOKENS = 10_000
"""Tokens of ``/api/v1/auth`` kept; past that the oldest is forgotten (they never expire
otherwise, as TinyPilot's live until its restart)."""
MAX_BODY = 1024 * 1024
_SCREEN_TTL_S = 1.0  # how long the screen's size is trusted for mapping mouse events

# TinyPilot's key codes (its JS -> HID table): any other code is a 400
KEY_CODES = frozenset(
    [f"Key{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    + [f"Digit{d}" for d in range(10)]
    + [f"F{n}" for n in range(1, 24)]
    + [f"Numpad{d}" for d in range(10)]
    + [
        "AltLeft", "AltRight", "ArrowDown", "ArrowLeft", "ArrowRight", "ArrowUp", "Backquote",
        "Backslash", "Backspace", "BracketLeft", "BracketRight", "CapsLock", "Comma",
        "ContextMenu", "ControlLeft", "ControlRight", "Delete", "End", "Enter", "Equal",
        "Escape", "Home", "Insert", "IntlBackslash", "IntlRo", "IntlYen", "MetaLeft",
        "MetaRight", "Minus", "NumpadMultiply", "NumpadAdd", "NumpadSubtract", "NumpadDecimal",
        "NumpadDivide", "NumpadEnter", "NumLock", "OSLeft", "OSRight", "PageUp", "PageDown",
        "Pause", "Period", "PrintScreen", "Quote", "ScrollLock", "Select", "Semicolon",
        "ShiftLeft", "ShiftRight", "Space", "Slash", "Tab",
    ]
)  # fmt: skip
_ALIASES = {"OSLeft": "MetaLeft", "OSRight": "MetaRight"}  # Firefox's names of Meta
# keystroke flag -> the modifier key it holds, in the order TinyPilot's bitmask lists them
_FLAGS = {
    "ctrlLeft": "ControlLeft", "shiftLeft": "ShiftLeft", "altLeft": "AltLeft",
    "metaLeft": "MetaLeft", "ctrlRight": "ControlRight", "shiftRight": "ShiftRight",
    "altRight": "AltRight", "metaRight": "MetaRight",
}  # fmt: skip
_MODIFIERS = frozenset(_FLAGS.values())
_BUTTONS = (("left", 1), ("right", 2), ("middle", 4))
_MAX_BUTTONS = 0x1F  # JavaScript's five mouse buttons

_FLASK_404 = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again.</p>\n"
)
_FLASK_405 = (
    "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n"
    "<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
)


class TinyPilotFaceSettings(pydantic.BaseModel):
    """The face's settings (``[devices.face_settings.tinypilot]``, ``--tinypilot-open``)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    open: bool = False
    """Hand out ``/api/v1/auth`` tokens without credentials to any client, not only to
    loopback ones (TinyPilot's passwordless mode). Only on a trusted network."""


class _Refused(Exception):
    """Ends a request with TinyPilot's plain-text answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(status: int, message: str) -> Response:
    return Response(message, status_code=status, media_type="text/plain; charset=utf-8")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _is_loopback(request: Request) -> bool:
    """A client on this machine, and not relayed by a proxy on it."""
    headers = request.headers
    if "forwarded" in headers or "x-forwarded-for" in headers or "x-real-ip" in headers:
        return False
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def _json(request: Request, malformed: str) -> Any:
    """The JSON body; ``malformed`` (TinyPilot's words) when it is not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _Refused(400, f"Request body is over {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Refused(400, f"Request body is over {MAX_BODY} bytes")
        chunks.append(chunk)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise _Refused(400, malformed)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise _Refused(400, malformed) from None


def _parse_keystroke(body: Any) -> tuple[str, list[str]]:
    """The key code and the modifier keys flagged, checked as TinyPilot checks them."""
    if not isinstance(body, dict):
        raise _Refused(400, "Keystroke parameter is invalid, expecting a dictionary data type")
    if "code" not in body:
        raise _Refused(400, "Keystroke request is missing required field: code")
    flagged = []
    for flag, modifier in _FLAGS.items():
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise _Refused(400, f"Modifier keys must be boolean values: {value}")
        if value:
            flagged.append(modifier)
    code = body["code"]
    if not isinstance(code, str):
        raise _Refused(400, f"Key code must be a string: {code}")
    if len(code) > 30:
        raise _Refused(400, f"Key code is too long: {code}")
    return code, flagged


def _parse_mouse_event(body: Any) -> tuple[int, float, float, int, int]:
    if not isinstance(body, dict):
        raise _Refused(400, "Message is invalid, expecting a JSON dictionary")
    for name in ("buttons", "relativeX", "relativeY", "verticalWheelDelta",
                 "horizontalWheelDelta"):  # fmt: skip
        if name not in body:
            raise _Refused(400, f"Missing required field: {name}")
    buttons = body["buttons"]
    # Python's int takes true and false too, as TinyPilot's parser does
    if not isinstance(buttons, int):
        raise _Refused(400, f"Button state must be an integer value: {buttons}")
    if not 0 <= buttons <= _MAX_BUTTONS:
        raise _Refused(400, f"Button state must be <= {_MAX_BUTTONS:#x}: {buttons}")
    relative = []
    for name in ("relativeX", "relativeY"):
        value = body[name]
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise _Refused(400, f"Relative position must be a float between 0.0 and 1.0: {value}")
        relative.append(float(value))
    wheels = []
    for name in ("verticalWheelDelta", "horizontalWheelDelta"):
        value = body[name]
        if not isinstance(value, int):
            raise _Refused(400, f"Wheel value must be a int: {value}")
        if value not in (-1, 0, 1):
            raise _Refused(400, f"Wheel value must be -1, 0, or 1: {value}")
        wheels.append(int(value))
    return int(buttons), relative[0], relative[1], wheels[0], wheels[1]


class _TinyPilot:
    """The face's state: its tokens, the keys and buttons it holds on the device."""

    def __init__(self, context: FaceContext, settings: TinyPilotFaceSettings) -> None:
        self.context = context
        self.dispatcher = context.dispatcher
        self.settings = settings
        self.tokens: OrderedDict[bytes, None] = OrderedDict()
        self.keys: set[bytes] = set()
        """Digests of static keys (passwords) already checked once."""
        self.held: set[str] = set()
        """Modifiers a lone-modifier keystroke left held."""
        self.buttons = 0
        self.input_lock = asyncio.Lock()
        self._screen_cache: tuple[float, dict[str, Any]] | None = None

    # -- authentication ---------------------------------------------------------------------
    async def _static_key(self, request: Request, key: str) -> bool:
        """Whether ``key`` is a token of this device's faces or its password."""
        digest = _digest(key)
        if digest in self.tokens or digest in self.keys:
            return True
        try:
            self.context.tokens.remaining(key)
            return True
        except AuthError:
            pass
        client = request.client.host if request.client else "unknown"
        try:
            await self.context.tokens.login(key, client)
        except (AuthError, RateLimitedError):
            return False
        self.keys.add(digest)
        return True

    async def authorise(self, request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _Refused(
                401, "Missing API token: send Authorization: Bearer TOKEN, with a token from "
                "POST /api/v1/auth or an API key"
            )  # fmt: skip
        if not await self._static_key(request, value.strip()):
            raise _Refused(403, "Invalid API token or key")

    async def auth(self, request: Request) -> Response:
        if "origin" in request.headers:
            raise _Refused(403, "Requests with an Origin header cannot retrieve API tokens")
        if not (self.settings.open or _is_loopback(request)):
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not await self._static_key(request, value.strip()):
                raise _Refused(
                    401, "API tokens are handed out without credentials only to clients on the "
                    "device itself: send Authorization: Bearer API_KEY, or have the operator "
                    "start the agent with --tinypilot-open"
                )  # fmt: skip
        token = str(uuid.uuid4())
        self.tokens[_digest(token)] = None
        while len(self.tokens) > MAX_TOKENS:
            self.tokens.popitem(last=False)
        return Response(orjson.dumps({"token": token}) + b"\n", media_type="application/json")

    # -- screen -----------------------------------------------------------------------------
    async def screenshot(self, request: Request) -> Response:
        await self.authorise(request)
        try:
            result = await self.dispatcher.run("screenshot", {"format": "jpeg"})
        except DeviceError as err:
            if "no video signal" in err.details:
                return Response(status_code=204)
            raise _Refused(500, f"Failed to capture screenshot: {err.details}") from err
        except RemoteHandsError as err:
            raise _Refused(500, f"Failed to capture screenshot: {err.details}") from err
        return Response(bytes(result["image"]), media_type="image/jpeg")

    async def _screen(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._screen_cache is None or now - self._screen_cache[0] > _SCREEN_TTL_S:
            screens = (await self.dispatcher.run("screens"))["screens"]
            self._screen_cache = (now, dict(screens[0]))
        return self._screen_cache[1]

    # -- keyboard ---------------------------------------------------------------------------
    async def _keys(self, down: bool, keys: list[str]) -> None:
        for key in keys:
            await self.dispatcher.run("keyboard.down" if down else "keyboard.up", {"key": key})

    async def keystroke(self, request: Request) -> Response:
        await self.authorise(request)
        invalid = "Keystroke parameter is invalid, expecting a dictionary data type"
        code, flagged = _parse_keystroke(await _json(request, invalid))
        if code not in KEY_CODES:
            raise _Refused(400, f"Unrecognized key code: {code}")
        key = _ALIASES.get(code, code)
        async with self.input_lock:
            try:
                if key in _MODIFIERS and len(flagged) == 1:
                    # TinyPilot sends the flagged modifier with no key and releases nothing
                    await self._keys(False, sorted(self.held - set(flagged)))
                    await self._keys(True, [m for m in flagged if m not in self.held])
                    self.held = set(flagged)
                    return Response(status_code=200)
                await self._keys(False, sorted(self.held - set(flagged)))
                pressed = [m for m in flagged if m not in self.held]
                await self._keys(True, pressed)
                self.held = set()
                try:
                    if key not in flagged:
                        await self._keys(True, [key])
                        await self._keys(False, [key])
                finally:
                    # TinyPilot releases every key right after each report with a key in it
                    await self._keys(False, list(reversed(flagged)))
            except RemoteHandsError as err:
                raise _Refused(500, f"Failed to forward keystroke: {err.details}") from err
        return Response(status_code=200)

    async def paste(self, request: Request) -> Response:
        await self.authorise(request)
        body = await _json(request, "Request is invalid, expecting a JSON dictionary")
        if not isinstance(body, dict):
            raise _Refused(400, "Request is invalid, expecting a JSON dictionary")
        for name in ("text", "language"):
            if name not in body:
                raise _Refused(400, f"Missing required field: {name}")
        text, language = body["text"], body["language"]
        if not isinstance(text, str) or not isinstance(language, str):
            raise _Refused(400, "text and language must be strings")
        missing = unsupported(text, language if language in LAYOUTS else "en-US")
        if missing:
            raise _Refused(
                400, "These characters are not supported: " + ", ".join(map(repr, missing))
            )
        typed = text.replace("\r", "")
        if typed:
            try:
                async with self.input_lock:
                    await self.dispatcher.run("keyboard.type", {"text": typed})
            except RemoteHandsError as err:
                status = 400 if err.http_status in (400, 422) else 500
                raise _Refused(status, f"Failed to forward paste: {err.details}") from err
        return Response(status_code=200)

    # -- mouse ------------------------------------------------------------------------------
    async def mouse_event(self, request: Request) -> Response:
        await self.authorise(request)
        buttons, rx, ry, vertical, horizontal = _parse_mouse_event(
            await _json(request, "Message is invalid, expecting a JSON dictionary")
        )
        async with self.input_lock:
            try:
                if buttons & ~0x7:
                    raise DeviceError("this device has no back or forward mouse buttons")
                screen = await self._screen()
                # 0.0 is the first pixel and 1.0 the last, as an absolute HID mouse spans them
                x = screen.get("x", 0) + round(rx * (screen["width"] - 1))
                y = screen.get("y", 0) + round(ry * (screen["height"] - 1))
                await self.dispatcher.run("mouse.move", {"x": x, "y": y})
                for name, bit in _BUTTONS:
                    if (buttons ^ self.buttons) & bit:
                        action = "mouse.down" if buttons & bit else "mouse.up"
                        await self.dispatcher.run(action, {"button": name})
                        self.buttons ^= bit
                if vertical or horizontal:
                    wheel = {"delta_x": horizontal, "delta_y": vertical}
                    await self.dispatcher.run("mouse.scroll", wheel)
            except RemoteHandsError as err:
                raise _Refused(500, f"Failed to forward mouse event: {err.details}") from err
        return Response(status_code=200)


Endpoint = Callable[[Request], Awaitable[Response]]


def _answered(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refused as refused:
            return _text(refused.status, refused.message)
        except Exception:
            log.exception("the TinyPilot face failed on %s %s", request.method, request.url.path)
            return _text(500, "Internal error: see the agent's log")

    return endpoint


async def _unrouted(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return Response(_FLASK_405, status_code=405, headers=headers,
                        media_type="text/html; charset=utf-8")  # fmt: skip
    return Response(_FLASK_404, status_code=404, media_type="text/html; charset=utf-8")


def tinypilot_face(context: FaceContext) -> Face:
    """The TinyPilot face of a device (the ``tinypilot`` entry of the face table)."""
    try:
        settings = TinyPilotFaceSettings.model_validate(dict(context.settings))
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(
            f"bad settings for the tinypilot face: {problems} (it takes: open)"
        ) from err
    face = _TinyPilot(context, settings)
    routes = [
        Route("/api/v1/auth", _answered(face.auth), methods=["POST"]),
        Route("/api/v1/screenshot", _answered(face.screenshot), methods=["GET"]),
        Route("/api/v1/keystroke", _answered(face.keystroke), methods=["POST"]),
        Route("/api/v1/mouseEvent", _answered(face.mouse_event), methods=["POST"]),
        Route("/api/v1/paste", _answered(face.paste), methods=["POST"]),
    ]
    return Face(name="tinypilot", routes=routes, error_handler=_unrouted, prefixes=("/api/v1/",))
