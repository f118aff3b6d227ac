"""An async client of the Openctrol agent's API (REST and the ``/ws/desktop`` stream), standalone:
it knows the protocol, nothing of the rest of remotehands (its errors are its own:
:class:`OpenctrolError` and its subclasses, which the driver translates).

- REST with the API key (``X-Openctrol-Key``); answers are read whatever their key casing
  (:class:`Folded`), errors ``{"error", "details"}`` become :class:`OpenctrolHTTPError` with
  the status, the error name and the details.
- :meth:`OpenctrolClient.create_session` then :meth:`OpenctrolClient.desktop` opens the
  session's socket: a :class:`DesktopStream` reads the ``hello`` (the monitors), keeps the
  latest OFRA frame and lets a caller wait for the next one, and sends input messages.

Where the agent's own document and the running agent differ (notes section 2.2), the client
asks the form the running agent serves first and falls back to the document's on a 404 (the
device volume: ``/audio/device/legacy`` then ``/audio/device``; the default device:
``/audio/default`` then ``/audio/device`` with ``set_default``). Volumes are fractions
(0.0-1.0) in this client's methods, except :meth:`OpenctrolClient.set_master` (0-100).

The protocol's shared pieces, used by the agent's Openctrol face too:

**Casing.** The Openctrol agent is ASP.NET Core: it reads request bodies case-insensitively
(``HaId``, ``haId`` and ``ha_id``'s ASP.NET spelling ``Ha_Id`` all bind), its DTOs go out in
camelCase, its ``/health`` and WebSocket messages in snake_case, and its clients (the Home
Assistant integration, its test script) send PascalCase. :func:`fold` maps every one of these
spellings of a name to one key (``haid``), so :class:`Folded` reads ``ha_id``, ``haId`` and
``HaId`` alike, in bodies the face receives and in answers the driver reads.

**OFRA.** A frame on ``/ws/desktop`` is a binary message: a 16-byte header, ASCII ``OFRA``
then three little-endian int32 (width, height, format; ``1`` is JPEG), then the image.

**Virtual keys.** Keys travel as Windows virtual-key codes (``VK_*``). :data:`VK_BY_CODE` maps
the W3C ``KeyboardEvent.code`` names of :mod:`remotehands.protocol.keys` to them, and
:data:`CODE_BY_VK` back (the generic ``VK_SHIFT``/``VK_CONTROL``/``VK_MENU`` read as the left
key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

__all__ = [
    "CODE_BY_VK",
    "FORMAT_JPEG",
    "HEADER",
    "MAGIC",
    "VK_BY_CODE",
    "DesktopFrame",
    "DesktopSession",
    "DesktopStream",
    "Folded",
    "OpenctrolClient",
    "OpenctrolError",
    "OpenctrolHTTPError",
    "OpenctrolProtocolError",
    "OpenctrolTimeout",
    "OpenctrolUnreachable",
    "fold",
    "ofra_header",
    "parse_ofra",
]

log = logging.getLogger(__name__)


class OpenctrolError(Exception):
    """Base of this client's errors."""


class OpenctrolHTTPError(OpenctrolError):
    """The agent answered an error: its HTTP ``status``, its ``error`` name and ``details``."""

    def __init__(self, status: int, error: str, details: str, what: str) -> None:
        super().__init__(f"{what}: {status} {error}: {details}")
        self.status, self.error, self.details = status, error, details


class OpenctrolUnreachable(OpenctrolError):
    """The agent could not be reached."""


class OpenctrolTimeout(OpenctrolError):
    """The agent did not answer in time."""


class OpenctrolProtocolError(OpenctrolError):
    """The agent answered something this client cannot read."""


MAGIC = b"OFRA"
HEADER = struct.Struct("<4siii")
"""The 16-byte frame header: magic, width, height, format (little-endian int32s)."""
FORMAT_JPEG = 1


def fold(name: str) -> str:
    """The case- and underscore-free form of a key: ``ha_id``, ``haId``, ``HaId`` -> ``haid``."""
    return name.replace("_", "").replace("-", "").lower()


class Folded(Mapping[str, Any]):
    """A JSON object read by folded keys: ``body["ha_id"]`` finds ``HaId`` as well.

    Nested objects and lists of objects come out folded too. When two keys fold alike, the
    last one wins, as ASP.NET's binder does.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = {fold(str(key)): value for key, value in data.items()}
        self.keys_as_sent = tuple(str(key) for key in data)
        """The keys as the sender spelled them."""

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[fold(key)])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and fold(key) in self._data


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Folded(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


def ofra_header(width: int, height: int, fmt: int = FORMAT_JPEG) -> bytes:
    """The 16-byte header of a frame."""
    return HEADER.pack(MAGIC, width, height, fmt)


def parse_ofra(message: bytes) -> tuple[int, int, int, bytes]:
    """``(width, height, format, payload)`` of a binary frame message;
    :class:`OpenctrolProtocolError` when it is not an OFRA frame."""
    if len(message) < HEADER.size:
        raise OpenctrolProtocolError(f"a frame of {len(message)} bytes is shorter than its header")
    magic, width, height, fmt = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise OpenctrolProtocolError(f"not an OFRA frame: it starts with {magic!r}")
    return width, height, fmt, message[HEADER.size :]


def _vk_table() -> dict[str, int]:
    table: dict[str, int] = {}
    table.update({f"Key{chr(c)}": c for c in range(ord("A"), ord("Z") + 1)})
    table.update({f"Digit{d}": 0x30 + d for d in range(10)})
    table.update({f"F{n}": 0x6F + n for n in range(1, 25)})
    table.update({f"Numpad{d}": 0x60 + d for d in range(10)})
    table.update(
        {
            "Backspace": 0x08,
            "Tab": 0x09,
            "Enter": 0x0D,
            "Pause": 0x13,
            "CapsLock": 0x14,
            "Escape": 0x1B,
            "Space": 0x20,
            "PageUp": 0x21,
            "PageDown": 0x22,
            "End": 0x23,
            "Home": 0x24,
            "ArrowLeft": 0x25,
            "ArrowUp": 0x26,
            "ArrowRight": 0x27,
            "ArrowDown": 0x28,
            "PrintScreen": 0x2C,
            "Insert": 0x2D,
            "Delete": 0x2E,
            "MetaLeft": 0x5B,
            "MetaRight": 0x5C,
            "ContextMenu": 0x5D,
            "NumpadMultiply": 0x6A,
            "NumpadAdd": 0x6B,
            "NumpadSubtract": 0x6D,
            "NumpadDecimal": 0x6E,
            "NumpadDivide": 0x6F,
            "NumLock": 0x90,
            "ScrollLock": 0x91,
            "ShiftLeft": 0xA0,
            "ShiftRight": 0xA1,
            "ControlLeft": 0xA2,
            "ControlRight": 0xA3,
            "AltLeft": 0xA4,
            "AltRight": 0xA5,
            "AudioVolumeMute": 0xAD,
            "AudioVolumeDown": 0xAE,
            "AudioVolumeUp": 0xAF,
            "MediaTrackNext": 0xB0,
            "MediaTrackPrevious": 0xB1,
            "MediaStop": 0xB2,
            "MediaPlayPause": 0xB3,
            "Semicolon": 0xBA,
            "Equal": 0xBB,
            "Comma": 0xBC,
            "Minus": 0xBD,
            "Period": 0xBE,
            "Slash": 0xBF,
            "Backquote": 0xC0,
            "BracketLeft": 0xDB,
            "Backslash": 0xDC,
            "BracketRight": 0xDD,
            "Quote": 0xDE,
            "IntlBackslash": 0xE2,
            "IntlRo": 0xC1,  # VK_ABNT_C1: the key in that place (scan code 0x73)
            "KanaMode": 0x15,  # VK_KANA
            "Convert": 0x1C,  # VK_CONVERT
            "NonConvert": 0x1D,  # VK_NONCONVERT
        }
    )
    return table


VK_BY_CODE: dict[str, int] = _vk_table()
"""W3C key code -> Windows virtual-key code. ``NumpadEnter`` shares ``VK_RETURN`` with
``Enter`` (Windows tells them apart by a flag the protocol does not carry); ``Power`` has no
virtual key, nor has ``IntlYen`` (Japanese layouts give it ``VK_OEM_5``, which is ``Backslash``
here)."""
VK_BY_CODE["NumpadEnter"] = 0x0D

CODE_BY_VK: dict[int, str] = {
    **{vk: code for code, vk in VK_BY_CODE.items() if code != "NumpadEnter"},
    0x10: "ShiftLeft",  # VK_SHIFT
    0x11: "ControlLeft",  # VK_CONTROL
    0x12: "AltLeft",  # VK_MENU
}
"""Windows virtual-key code -> W3C key code."""


@dataclass(frozen=True, slots=True)
class DesktopSession:
    """A desktop session: its id, its socket's URL (with the token) and its expiry."""

    id: str
    websocket_url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DesktopFrame:
    """One OFRA frame: its sequence number on this socket, size, format and image bytes."""

    seq: int
    width: int
    height: int
    format: int
    data: bytes


class OpenctrolClient:
    """The REST API of one Openctrol agent at ``url`` (``http://host:44325``)."""

    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        verify: bool | ssl.SSLContext = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.verify = verify
        self.timeout_s = timeout_s
        headers = {"X-Openctrol-Key": key} if key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, verify=verify, timeout=timeout_s
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> OpenctrolClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One request; the answer's JSON (``Folded`` for an object, ``{}`` for no body)."""
        try:
            response = await self._http.request(
                method,
                path,
                content=orjson.dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json"} if body is not None else None,
            )
        except httpx.TimeoutException as err:
            raise OpenctrolTimeout(
                f"the Openctrol agent at {self.url} did not answer {method} {path} within "
                f"{self.timeout_s:g} s"
            ) from err
        except httpx.HTTPError as err:
            raise OpenctrolUnreachable(
                f"cannot reach the Openctrol agent at {self.url} ({err}): check that it runs "
                "and that the address and port (44325 by default) are right"
            ) from err
        data: Any = {}
        if response.content.strip():
            try:
                data = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                data = {"details": response.text[:200]}
        if isinstance(data, dict):
            data = Folded(data)
        if response.status_code >= 400:
            details = data.get("details") if isinstance(data, Folded) else None
            error = data.get("error") if isinstance(data, Folded) else None
            raise OpenctrolHTTPError(
                response.status_code,
                str(error or "error"),
                str(details or response.text[:200]),
                f"{method} {path}",
            )
        return data

    # -- health, monitors, sessions --------------------------------------------------------
    async def health(self) -> Folded:
        """``/api/v1/health``: agent id, version, the remote desktop's state, sessions."""
        result: Folded = await self.request("GET", "/api/v1/health")
        return result

    async def monitors(self) -> Folded:
        """``/api/v1/rd/monitors``: ``monitors`` and ``current_monitor_id``."""
        result: Folded = await self.request("GET", "/api/v1/rd/monitors")
        return result

    async def select_monitor(self, monitor_id: str) -> None:
        """Select the monitor the stream shows and absolute moves address."""
        await self.request("POST", "/api/v1/rd/monitor", {"MonitorId": monitor_id})

    async def create_session(self, ha_id: str, ttl_s: int) -> DesktopSession:
        """A new desktop session (the agent clamps ``ttl_s`` to 60-3600 s)."""
        data = await self.request(
            "POST", "/api/v1/sessions/desktop", {"HaId": ha_id, "TtlSeconds": ttl_s}
        )
        try:
            return DesktopSession(
                id=str(data["session_id"]),
                websocket_url=str(data["websocket_url"]),
                expires_at=datetime.fromisoformat(str(data["expires_at"])),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise OpenctrolProtocolError(f"the session answer lacks {err}") from err

    async def end_session(self, session_id: str) -> None:
        """End a desktop session (its sockets close)."""
        await self.request("POST", f"/api/v1/sessions/desktop/{session_id}/end")

    async def desktop(
        self, session: DesktopSession, *, open_timeout_s: float = 10.0
    ) -> DesktopStream:
        """Open the session's ``/ws/desktop`` socket and read its hello."""
        url = session.websocket_url
        # The agent builds the URL from the Host header; a client behind an address
        # translation keeps its own host and port.
        base = self.url.replace("https://", "wss://").replace("http://", "ws://")
        url = base + url[url.index("/ws/") :]
        ssl_arg: Any = None
        if url.startswith("wss://"):
            ssl_arg = (
                self.verify
                if isinstance(self.verify, ssl.SSLContext)
                else (ssl.create_default_context() if self.verify else _insecure())
            )
        try:
            ws = await connect(
                url,
                ssl=ssl_arg,
                open_timeout=open_timeout_s,
                compression=None,
                max_size=64 * 1024 * 1024,
                max_queue=4,
            )
        except InvalidStatus as err:
            body: Any = None
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                body = orjson.loads(err.response.body or b"{}")
            folded = Folded(body if isinstance(body, dict) else {})
            raise OpenctrolHTTPError(
                err.response.status_code,
                str(folded.get("error", "error")),
                str(folded.get("details", "")),
                "the desktop socket",
            ) from err
        except (OSError, TimeoutError, WebSocketException) as err:
            raise OpenctrolUnreachable(
                f"cannot open the desktop socket at {self.url}: {err}"
            ) from err
        stream = DesktopStream(ws, session)
        try:
            await stream.read_hello(open_timeout_s)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def power(self, action: str) -> None:
        """``restart`` or ``shutdown`` the machine."""
        await self.request("POST", "/api/v1/power", {"action": action})

    # -- audio -----------------------------------------------------------------------------
    async def audio_state(self) -> Folded:
        """Devices and sessions, volumes 0.0-1.0 (``/api/v1/audio/state``)."""
        result: Folded = await self.request("GET", "/api/v1/audio/state")
        return result

    async def set_master(self, volume: float | None = None, muted: bool | None = None) -> None:
        """The default device's volume (0-100) and mute."""
        body: dict[str, Any] = {}
        if volume is not None:
            body["volume"] = volume
        if muted is not None:
            body["muted"] = muted
        await self.request("POST", "/api/v1/audio/master", body)

    async def set_device(
        self, device_id: str, volume: float, muted: bool, set_default: bool = False
    ) -> None:
        """A device's volume (0.0-1.0) and mute, and optionally make it the default."""
        body = {
            "device_id": device_id,
            "volume": volume,
            "muted": muted,
            "set_default": set_default,
        }
        try:
            await self.request("POST", "/api/v1/audio/device/legacy", body)
        except OpenctrolHTTPError as err:
            if err.status != 404:
                raise
            await self.request("POST", "/api/v1/audio/device", body)

    async def set_default(self, device_id: str, volume: float, muted: bool) -> None:
        """Make a device the default output (``volume``/``muted`` are its current ones, for
        agents that only take the document's form)."""
        try:
            await self.request("POST", "/api/v1/audio/default", {"DeviceId": device_id})
        except OpenctrolHTTPError as err:
            if err.status != 404:
                raise
            await self.set_device(device_id, volume, muted, set_default=True)

    async def set_session(
        self, session_id: str, volume: float, muted: bool, output_device_id: str | None = None
    ) -> None:
        """An application's volume (0.0-1.0), mute and output device."""
        body: dict[str, Any] = {"session_id": session_id, "volume": volume, "muted": muted}
        if output_device_id:
            body["output_device_id"] = output_device_id
        await self.request("POST", "/api/v1/audio/session", body)


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class DesktopStream:
    """The ``/ws/desktop`` socket of one session: frames in, input out."""

    def __init__(self, ws: ClientConnection, session: DesktopSession) -> None:
        self.ws = ws
        self.session = session
        self.hello: Folded = Folded({})
        self.latest: DesktopFrame | None = None
        self._seq = 0
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def monitors(self) -> list[Folded]:
        """The monitors the hello listed (``id``, ``name``, ``width``, ``height``,
        ``is_primary``)."""
        return [m for m in self.hello.get("monitors", []) if isinstance(m, Folded)]

    async def read_hello(self, timeout_s: float) -> None:
        """Wait for the hello, then read frames in the background."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    message = await self.ws.recv()
                    if isinstance(message, str):
                        data = orjson.loads(message)
                        if isinstance(data, dict) and data.get("type") == "hello":
                            self.hello = Folded(data)
                            break
                    else:
                        self._keep(message)
        except TimeoutError as err:
            raise OpenctrolTimeout(
                f"no hello on the desktop socket within {timeout_s:g} s"
            ) from err
        except (ConnectionClosed, orjson.JSONDecodeError) as err:
            raise OpenctrolProtocolError(
                f"the desktop socket closed before its hello: {err}"
            ) from err
        self._reader = asyncio.create_task(self._read(), name="openctrol frames")

    def _keep(self, message: bytes) -> None:
        try:
            width, height, fmt, data = parse_ofra(message)
        except OpenctrolProtocolError as err:
            log.warning("openctrol: a binary message is not a frame: %s", err)
            return
        if fmt != FORMAT_JPEG:
            log.warning("openctrol: a frame in format %d (not JPEG) was skipped", fmt)
            return
        self._seq += 1
        self.latest = DesktopFrame(self._seq, width, height, fmt, data)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self._keep(message)
                    async with self._arrived:
                        self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or "connection lost"
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    async def frame_after(self, seq: int, timeout_s: float) -> DesktopFrame:
        """The first frame newer than ``seq`` (0: any), waiting up to ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s), self._arrived:
                while self.latest is None or self.latest.seq <= seq:
                    if self.closed.is_set():
                        raise OpenctrolProtocolError(
                            f"the desktop socket closed ({self.close_reason or 'no reason'})"
                        )
                    await self._arrived.wait()
        except TimeoutError as err:
            raise OpenctrolTimeout(
                f"no new frame on the desktop socket within {timeout_s:g} s"
            ) from err
        assert self.latest is not None  # the loop above ends only with one
        return self.latest

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one JSON message."""
        try:
            await self.ws.send(orjson.dumps(message).decode())
        except ConnectionClosed as err:
            raise OpenctrolProtocolError(f"the desktop socket is closed: {err}") from err

    # -- input: one method per message of the protocol ---------------------------------------
    async def pointer_move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)``, 0-65535 across the selected monitor."""
        await self.send({"type": "pointer_move", "absolute": True, "x": x, "y": y})

    async def pointer_move_by(self, dx: int, dy: int) -> None:
        """Move the pointer by ``(dx, dy)`` pixels."""
        await self.send({"type": "pointer_move", "dx": dx, "dy": dy})

    async def pointer_button(self, button: str, down: bool) -> None:
        """Press or release ``left``, ``right`` or ``middle``."""
        await self.send({"type": "pointer_button", "button": button,
                         "action": "down" if down else "up"})  # fmt: skip

    async def pointer_wheel(self, delta_x: int, delta_y: int) -> None:
        """Turn the wheel, in Windows units (120 a notch; positive ``delta_y`` away from the
        user, which scrolls up)."""
        await self.send({"type": "pointer_wheel", "delta_x": delta_x, "delta_y": delta_y})

    async def key(self, key_code: int, down: bool, *, ctrl: bool = False, alt: bool = False,
                  shift: bool = False, win: bool = False) -> None:  # fmt: skip
        """Press or release a key by virtual-key code, with modifiers held around it."""
        await self.send({"type": "key", "key_code": key_code, "action": "down" if down else "up",
                         "ctrl": ctrl, "alt": alt, "shift": shift, "win": win})  # fmt: skip

    async def text(self, text: str, *, ctrl: bool = False, alt: bool = False,
                   shift: bool = False, win: bool = False) -> None:  # fmt: skip
        """Type ``text`` (with those modifiers held)."""
        await self.send({"type": "text", "text": text, "ctrl": ctrl, "alt": alt,
                         "shift": shift, "win": win})  # fmt: skip

    async def select_monitor(self, monitor_id: str) -> None:
        """Show (and address absolute moves to) another monitor."""
        await self.send({"type": "monitor_select", "monitor_id": monitor_id})

    async def aclose(self) -> None:
        """Close the socket."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.closed.set()
