"""A standalone async client of PiKVM's kvmd API (HTTP and the event WebSocket).

It knows kvmd and nothing of remotehands: the driver (:mod:`.driver`) is the glue. Errors are
:class:`KvmdApiError`, carrying the HTTP status and kvmd's own error name and message
(``AtxIsBusyError``, "Performing another ATX operation, please try again later").

Authentication, as kvmd accepts it (``auth``):

- ``"headers"`` (default): ``X-KVMD-User``/``X-KVMD-Passwd`` on every request;
- ``"basic"``: HTTP Basic on every request;
- ``"cookie"``: one ``POST /api/auth/login`` (form fields), then the ``auth_token`` cookie; the
  client signs in again once when the device forgot the session (after a restart).

With two-factor sign-in (``totp_secret``), the current code is appended to the password each
time it is sent, as kvmd expects. Every request has a timeout; uploads stream their body with a
``Content-Length`` (kvmd refuses chunked uploads) and never hold the image in memory.

Events: :meth:`KvmdClient.events` opens ``/api/ws`` and yields each event with the subsystem's
state so far, partial events deep-merged into the last full one (dicts recursively, everything
else replaced).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import pyotp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

__all__ = [
    "AuthMode",
    "KvmdApiError",
    "KvmdClient",
    "KvmdEvents",
    "Snapshot",
    "deep_merge",
]

AuthMode = Literal["headers", "basic", "cookie"]
Progress = Callable[[int, int], Awaitable[None] | None]
"""Called with (bytes written, total) as an upload goes."""


class KvmdApiError(Exception):
    """kvmd refused or failed a request: its status, error name and message.

    ``status`` 0 is a failure to reach the device at all (``error`` is then the transport's
    error class, ``ConnectError``, ``ReadTimeout``...)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True)
class Snapshot:
    """A streamer frame: the JPEG as the device sent it, and its ``X-UStreamer-*`` facts."""

    data: bytes
    width: int
    height: int
    online: bool
    headers: Mapping[str, str] = field(default_factory=dict)


def deep_merge(base: Mapping[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    """``part`` merged into ``base``: dicts recursively, every other value replaced."""
    merged = dict(base)
    for key, value in part.items():
        before = merged.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            merged[key] = deep_merge(before, value)
        else:
            merged[key] = value
    return merged


def _bool(value: bool) -> str:
    return "1" if value else "0"


class KvmdClient:
    """One PiKVM, over HTTP(S)."""

    def __init__(
        self,
        url: str,
        *,
        user: str = "admin",
        password: str = "",
        totp_secret: str | None = None,
        auth: AuthMode = "headers",
        verify: bool | str = True,
        timeout_s: float = 10.0,
    ) -> None:
        """``verify``: check the certificate (``True``), not (``False``), or against a CA
        file (a path)."""
        self.url = url.rstrip("/")
        self.user = user
        self._password = password
        self._totp = pyotp.TOTP(totp_secret) if totp_secret else None
        self.auth: AuthMode = auth
        self.timeout_s = timeout_s
        self._verify = verify
        self._http = httpx.AsyncClient(
            base_url=self.url, verify=self._ssl_context(), timeout=timeout_s
        )
        self._token: str | None = None
        self._login_lock = asyncio.Lock()

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if isinstance(self._verify, str):
            return ssl.create_default_context(cafile=self._verify)
        if self._verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- authentication -------------------------------------------------------------------

    def password(self) -> str:
        """The password to send now: with the current TOTP code appended under 2FA."""
        if self._totp is None:
            return self._password
        return self._password + self._totp.now()

    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate one request (or WebSocket upgrade)."""
        if self.auth == "headers":
            return {"X-KVMD-User": self.user, "X-KVMD-Passwd": self.password()}
        if self.auth == "basic":
            pair = f"{self.user}:{self.password()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {"Cookie": f"auth_token={self._token}"} if self._token else {}

    async def login(self, expire_s: int = 0) -> str:
        """Sign in with the login form; answers the session token (kept for cookie mode)."""
        response = await self._send(
            "POST",
            "/api/auth/login",
            data={"user": self.user, "passwd": self.password(), "expire": str(expire_s)},
            authenticate=False,
        )
        token = response.cookies.get("auth_token")
        if not token:
            raise KvmdApiError(
                response.status_code,
                "NoAuthToken",
                "the device signed us in but set no auth_token cookie",
            )
        self._token = token
        return token

    async def logout(self) -> None:
        """End the session (kvmd ends every session of the user)."""
        await self.request("POST", "/api/auth/logout")
        self._token = None

    async def check(self) -> None:
        """``/api/auth/check``: raises unless the credentials are good."""
        await self.request("GET", "/api/auth/check")

    # -- requests -------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        authenticate: bool = True,
        timeout: httpx.Timeout | float | None = None,  # noqa: ASYNC109 -- httpx's own per-request timeout
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if authenticate:
            headers.update(self.auth_headers())
        try:
            response = await self._http.request(
                method,
                path,
                headers=headers,
                timeout=self.timeout_s if timeout is None else timeout,
                **kwargs,
            )
        except httpx.HTTPError as err:
            raise KvmdApiError(0, type(err).__name__, str(err) or repr(err)) from err
        if response.status_code >= 300 and response.status_code != 302:
            raise _api_error(response)
        return response

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, authenticated; cookie mode signs in first, and once again when the
        device no longer knows the session."""
        if self.auth != "cookie":
            return await self._send(method, path, **kwargs)
        if self._token is None:
            async with self._login_lock:
                if self._token is None:
                    await self.login()
        try:
            return await self._send(method, path, **kwargs)
        except KvmdApiError as err:
            if err.status not in (401, 403) or "content" in kwargs:
                raise
        async with self._login_lock:
            await self.login()
        return await self._send(method, path, **kwargs)

    async def call(self, method: str, path: str, **params: Any) -> Any:
        """A JSON request with query parameters (``None`` left out, bools as 0/1); answers
        the envelope's ``result``."""
        query = {
            k: _bool(v) if isinstance(v, bool) else v for k, v in params.items() if v is not None
        }
        response = await self.request(method, path, params=query)
        return response.json().get("result", {})

    # -- info, HID ------------------------------------------------------------------------

    async def info(self, fields: str | None = None, legacy: bool = True) -> dict[str, Any]:
        """``/api/info``."""
        result: dict[str, Any] = await self.call("GET", "/api/info", fields=fields, legacy=legacy)
        return result

    async def hid_state(self) -> dict[str, Any]:
        """``/api/hid``."""
        result: dict[str, Any] = await self.call("GET", "/api/hid")
        return result

    async def send_key(self, key: str, state: bool | None = None, finish: bool = False) -> None:
        """Press or release a key by web name; no ``state``: press with finish (released at
        once, except modifiers and PrintScreen)."""
        if state is None:
            await self.call("POST", "/api/hid/events/send_key", key=key)
        else:
            await self.call(
                "POST",
                "/api/hid/events/send_key",
                key=key,
                state=state,
                finish=finish if finish else None,
            )

    async def send_shortcut(self, keys: list[str]) -> None:
        """Press keys in order and release them in reverse."""
        await self.call("POST", "/api/hid/events/send_shortcut", keys=",".join(keys))

    async def print_text(
        self,
        text: str,
        *,
        keymap: str | None = None,
        limit: int = 0,
        slow: bool = False,
        delay_s: float | None = None,
    ) -> None:
        """Type ``text`` (``limit`` 0: no truncation). Answers once it is typed: the timeout
        grows with the text."""
        params: dict[str, Any] = {
            "limit": limit,
            "keymap": keymap,
            "slow": slow or None,
            "delay": delay_s,
        }
        query = {
            k: _bool(v) if isinstance(v, bool) else v for k, v in params.items() if v is not None
        }
        per_char = 2 * (delay_s if delay_s is not None else 0.02 if slow else 0.0) + 0.01
        await self.request(
            "POST",
            "/api/hid/print",
            params=query,
            content=text.encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=self.timeout_s + len(text) * per_char,
        )

    async def send_mouse_button(self, button: str, state: bool | None = None) -> None:
        """Press, release or (no ``state``) click a button."""
        await self.call("POST", "/api/hid/events/send_mouse_button", button=button, state=state)

    async def send_mouse_move(self, to_x: int, to_y: int) -> None:
        """An absolute move in -32768..32767 (0, 0: the screen's centre)."""
        await self.call("POST", "/api/hid/events/send_mouse_move", to_x=to_x, to_y=to_y)

    async def send_mouse_relative(self, delta_x: int, delta_y: int) -> None:
        """A relative move, -127..127 on each axis."""
        await self.call(
            "POST", "/api/hid/events/send_mouse_relative", delta_x=delta_x, delta_y=delta_y
        )

    async def send_mouse_wheel(self, delta_x: int, delta_y: int) -> None:
        """Wheel notches, -127..127 (positive ``delta_y``: up)."""
        await self.call(
            "POST", "/api/hid/events/send_mouse_wheel", delta_x=delta_x, delta_y=delta_y
        )

    async def hid_reset(self) -> None:
        """Release every key and button."""
        await self.call("POST", "/api/hid/reset")

    # -- ATX ------------------------------------------------------------------------------

    async def atx_state(self) -> dict[str, Any]:
        """``/api/atx``: enabled, busy, leds.power/hdd."""
        result: dict[str, Any] = await self.call("GET", "/api/atx")
        return result

    async def atx_power(self, action: str, wait: bool = False) -> None:
        """``on``, ``off``, ``off_hard`` or ``reset_hard`` (gated on the power LED)."""
        await self.call("POST", "/api/atx/power", action=action, wait=wait)

    async def atx_click(self, button: str, wait: bool = False) -> None:
        """Press ``power``, ``power_long`` or ``reset`` whatever the power state."""
        await self.call("POST", "/api/atx/click", button=button, wait=wait)

    # -- streamer -------------------------------------------------------------------------

    async def streamer_state(self) -> dict[str, Any]:
        """``/api/streamer`` (``streamer`` is ``None`` while ustreamer is down)."""
        result: dict[str, Any] = await self.call("GET", "/api/streamer")
        return result

    async def snapshot(
        self,
        *,
        save: bool = False,
        load: bool = False,
        allow_offline: bool = False,
        preview: bool = False,
        preview_max_width: int | None = None,
        preview_max_height: int | None = None,
        preview_quality: int | None = None,
    ) -> Snapshot:
        """A JPEG of the screen as ustreamer encoded it."""
        params = {
            "save": save or None,
            "load": load or None,
            "allow_offline": allow_offline or None,
            "preview": preview or None,
            "preview_max_width": preview_max_width,
            "preview_max_height": preview_max_height,
            "preview_quality": preview_quality,
        }
        query = {
            k: _bool(v) if isinstance(v, bool) else v for k, v in params.items() if v is not None
        }
        response = await self.request("GET", "/api/streamer/snapshot", params=query)
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-")}
        return Snapshot(
            data=response.content,
            width=int(response.headers.get("x-ustreamer-width", "0")),
            height=int(response.headers.get("x-ustreamer-height", "0")),
            online=response.headers.get("x-ustreamer-online", "true") == "true",
            headers=headers,
        )

    async def ocr(
        self,
        *,
        langs: list[str] | None = None,
        left: int = -1,
        top: int = -1,
        right: int = -1,
        bottom: int = -1,
    ) -> str:
        """The screen's text, recognised by the device (slow: 10-20 s a screen)."""
        query: dict[str, Any] = {
            "ocr": "1",
            "ocr_left": left,
            "ocr_top": top,
            "ocr_right": right,
            "ocr_bottom": bottom,
        }
        if langs:
            query["ocr_langs"] = ",".join(langs)
        response = await self.request(
            "GET", "/api/streamer/snapshot", params=query, timeout=max(self.timeout_s, 60.0)
        )
        return response.text

    # -- MSD ------------------------------------------------------------------------------

    async def msd_state(self) -> dict[str, Any]:
        """``/api/msd``."""
        result: dict[str, Any] = await self.call("GET", "/api/msd")
        return result

    async def msd_write(
        self,
        image: str,
        chunks: AsyncIterator[bytes],
        size: int,
        *,
        prefix: str | None = None,
        remove_incomplete: bool = True,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload ``size`` bytes from ``chunks`` as ``image``, streamed with a Content-Length
        (never held whole); ``progress(written, size)`` after each chunk. Answers kvmd's
        ``{"image": {"name", "size", "written"}}``."""

        async def body() -> AsyncIterator[bytes]:
            written = 0
            async for chunk in chunks:
                written += len(chunk)
                if written > size:
                    raise KvmdApiError(
                        0,
                        "IncompleteUpload",
                        f"the image {image} has more than the {size} bytes announced",
                    )
                yield chunk
                if progress is not None:
                    outcome = progress(written, size)
                    if outcome is not None:
                        await outcome
            if written < size:
                raise KvmdApiError(
                    0,
                    "IncompleteUpload",
                    f"the image {image} ended after {written} of the {size} bytes announced",
                )

        query: dict[str, Any] = {"image": image, "remove_incomplete": _bool(remove_incomplete)}
        if prefix:
            query["prefix"] = prefix
        timeout = httpx.Timeout(self.timeout_s, read=max(self.timeout_s, 120.0))
        response = await self.request(
            "POST",
            "/api/msd/write",
            params=query,
            content=body(),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            timeout=timeout,
        )
        result: dict[str, Any] = response.json().get("result", {})
        return result

    async def msd_write_remote(
        self,
        url: str,
        image: str | None = None,
        *,
        prefix: str | None = None,
        insecure: bool = False,
        timeout_s: float = 10.0,
        remove_incomplete: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Have the device download ``url``; yields each progress ``result`` (``{"image":
        {"name", "size", "written"}}``) as the NDJSON stream brings it, and raises the error
        a failing line reports."""
        query = {
            "url": url,
            "image": image,
            "prefix": prefix,
            "insecure": _bool(insecure),
            "timeout": str(timeout_s),
            "remove_incomplete": _bool(remove_incomplete),
        }
        query = {k: v for k, v in query.items() if v is not None}
        headers = self.auth_headers()
        if self.auth == "cookie" and self._token is None:
            await self.login()
            headers = self.auth_headers()
        timeout = httpx.Timeout(self.timeout_s, read=max(self.timeout_s, 60.0 + timeout_s))
        try:
            async with self._http.stream(
                "POST", "/api/msd/write_remote", params=query, headers=headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _api_error(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    result = message.get("result", {})
                    if not message.get("ok"):
                        raise KvmdApiError(
                            200,
                            str(result.get("error", "Error")),
                            str(result.get("error_msg", line)),
                        )
                    yield result
        except httpx.HTTPError as err:
            raise KvmdApiError(0, type(err).__name__, str(err) or repr(err)) from err

    async def msd_set_params(
        self, *, image: str | None = None, cdrom: bool | None = None, rw: bool | None = None
    ) -> None:
        """Select an image (``""``: none) and how the drive presents it (drive disconnected)."""
        await self.call("POST", "/api/msd/set_params", image=image, cdrom=cdrom, rw=rw)

    async def msd_set_connected(self, connected: bool) -> None:
        """Connect the drive to the host, or disconnect it."""
        await self.call("POST", "/api/msd/set_connected", connected=connected)

    async def msd_remove(self, image: str) -> None:
        """Delete a stored image."""
        await self.call("POST", "/api/msd/remove", image=image)

    async def msd_reset(self) -> None:
        """Eject, clear cdrom/rw, remount read-only."""
        await self.call("POST", "/api/msd/reset")

    # -- switch ---------------------------------------------------------------------------

    async def switch_state(self) -> dict[str, Any]:
        """``/api/switch``."""
        result: dict[str, Any] = await self.call("GET", "/api/switch")
        return result

    async def switch_set_active(self, port: int | str) -> None:
        """Show ``port`` (0-based int, or ``"unit.channel"``)."""
        await self.call("POST", "/api/switch/set_active", port=port)

    async def switch_set_beacon(self, port: int | str, state: bool) -> None:
        """Light or clear a port's beacon."""
        await self.call("POST", "/api/switch/set_beacon", port=port, state=state)

    async def switch_set_port_params(self, port: int | str, **params: Any) -> None:
        """A port's name, EDID, dummy plug and ATX click delays."""
        await self.call("POST", "/api/switch/set_port_params", port=port, **params)

    async def switch_atx_power(self, port: int | str, action: str) -> None:
        """A power action on a port's machine."""
        await self.call("POST", "/api/switch/atx/power", port=port, action=action)

    async def switch_atx_click(self, port: int | str, button: str) -> None:
        """Press a front-panel button of a port's machine."""
        await self.call("POST", "/api/switch/atx/click", port=port, button=button)

    # -- events ---------------------------------------------------------------------------

    def ws_url(self, stream: bool = False) -> str:
        """``/api/ws`` on the device's scheme."""
        base = "wss" + self.url[5:] if self.url.startswith("https") else "ws" + self.url[4:]
        return f"{base}/api/ws?stream={_bool(stream)}"

    @asynccontextmanager
    async def events(self, stream: bool = False) -> AsyncIterator[KvmdEvents]:
        """The event socket, authenticated as the requests are."""
        if self.auth == "cookie" and self._token is None:
            await self.login()
        ssl_context = self._ssl_context() if self.url.startswith("https") else None
        try:
            async with asyncio.timeout(self.timeout_s):
                ws = await connect(
                    self.ws_url(stream),
                    additional_headers=self.auth_headers(),
                    ssl=ssl_context if ssl_context is not True else None,
                    open_timeout=None,
                    max_size=16 * 1024 * 1024,
                    # kvmd pushes a burst of states on connect: a small receive queue would
                    # stop reading, and a close would then wait for the close frame behind it
                    max_queue=4096,
                )
        except InvalidStatus as err:
            raise _status_error(err.response.status_code, bytes(err.response.body or b"")) from err
        except (OSError, InvalidHandshake, TimeoutError) as err:
            raise KvmdApiError(0, type(err).__name__, str(err) or repr(err)) from err
        try:
            yield KvmdEvents(ws, self.timeout_s)
        finally:
            await ws.close()


class KvmdEvents:
    """An open ``/api/ws``: iterate it for ``(event_type, state)``; ``states`` holds the
    latest merged state of each subsystem, ``loop`` the version the device said."""

    def __init__(self, ws: ClientConnection, timeout_s: float) -> None:
        self.ws = ws
        self.timeout_s = timeout_s
        self.states: dict[str, dict[str, Any]] = {}
        self.loop: dict[str, Any] | None = None

    def __aiter__(self) -> KvmdEvents:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        while True:
            try:
                frame = await self.ws.recv()
            except ConnectionClosed:
                raise StopAsyncIteration from None
            if isinstance(frame, bytes):
                continue  # binary pongs
            message = json.loads(frame)
            event_type, event = str(message.get("event_type")), message.get("event")
            if event_type.endswith("_state"):  # the names of kvmd before 4.36 (hid_state...)
                event_type = event_type.removesuffix("_state")
            if event_type == "loop":
                self.loop = event
                return event_type, event
            if event_type in ("pong", "clients", "hid_keymaps") or not isinstance(event, dict):
                return event_type, event
            state = deep_merge(self.states.get(event_type, {}), event)
            self.states[event_type] = state
            return event_type, state

    async def send(self, event_type: str, event: Mapping[str, Any]) -> None:
        """A JSON event (``key``, ``mouse_move``..., ``ping``)."""
        await self.ws.send(json.dumps({"event_type": event_type, "event": dict(event)}))

    async def send_binary(self, frame: bytes) -> None:
        """A binary HID frame, as kvmd's web UI sends them."""
        await self.ws.send(frame)

    async def wait_for(
        self, predicate: Callable[[str, Any], bool], timeout_s: float = 10.0
    ) -> tuple[str, Any]:
        """The first event for which ``predicate(event_type, state)`` holds."""
        async with asyncio.timeout(timeout_s):
            async for event_type, state in self:
                if predicate(event_type, state):
                    return event_type, state
        raise KvmdApiError(0, "ConnectionClosed", "the event socket closed")


def _status_error(status: int, body: bytes) -> KvmdApiError:
    try:
        result = json.loads(body).get("result", {})
        return KvmdApiError(status, str(result["error"]), str(result["error_msg"]))
    except (ValueError, KeyError, AttributeError, TypeError):
        text = body.decode("utf-8", errors="replace").strip() or "no message"
        return KvmdApiError(status, "HttpError", text)


def _api_error(response: httpx.Response) -> KvmdApiError:
    return _status_error(response.status_code, response.content)
