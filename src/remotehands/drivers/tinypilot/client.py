"""A standalone async client of TinyPilot's REST API (``/api/v1``), with no remotehands driver
in it: tokens, screenshots, keystrokes, mouse events.

Authentication is either a static key (TinyPilot Pro's API keys, sent as ``Authorization:
Bearer KEY``) or, without a key, a token from ``POST /api/v1/auth``. Tokens live until the
device's server process restarts, so a request answered 401 or 403 with a token fetches a new
token and is sent once more; a static key is never swapped.

Failures are this module's own exceptions (the driver turns them into remotehands errors),
each with a message that keeps the device's own words: :class:`NoSignal` for a screenshot
answered 204, :class:`Refused` for 401/403, :class:`BadRequest` for a 400,
:class:`DeviceFailed` for a 500 (``Failed to forward keystroke: ... (is cable connected?)``)
and any other answer, :class:`Unreachable` and :class:`Timeout` for the network.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "NO_SIGNAL",
    "BadRequest",
    "DeviceFailed",
    "NoSignal",
    "Refused",
    "Timeout",
    "TinyPilotClient",
    "TinyPilotError",
    "Unreachable",
]

NO_SIGNAL = "no video signal"
"""The words every screenshot failure for want of video input carries (the TinyPilot face
answers 204 for an error that says them)."""

_MAX_SHOWN = 300  # characters of a device's error body kept in our message


class TinyPilotError(Exception):
    """Base of this client's errors; ``message`` says what happened and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoSignal(TinyPilotError):
    """The device receives no video from the target (a screenshot answered 204)."""


class Refused(TinyPilotError):
    """The device refused the credential (401 or 403)."""


class BadRequest(TinyPilotError):
    """The device called the request malformed (400)."""


class DeviceFailed(TinyPilotError):
    """The device failed the request (500: input not forwarded; or an unexpected answer)."""


class Unreachable(TinyPilotError):
    """The device cannot be reached."""


class Timeout(TinyPilotError):
    """The device did not answer in time."""


class TinyPilotClient:
    """One TinyPilot device at ``url``; use it as an async context manager.

    ``key``: a static API key (else tokens from ``/api/v1/auth``). ``verify``: check the
    device's certificate (``False`` for a self-signed one, or a CA file to check it against).
    """

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        verify: bool | Path = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s
        self._verify = verify
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        self.token_fetches = 0
        """How many tokens were fetched (a restart of the device costs one more)."""

    async def __aenter__(self) -> TinyPilotClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Make the HTTP client (no request is sent yet)."""
        if self._http is None:
            verify: bool | ssl.SSLContext = (
                ssl.create_default_context(cafile=str(self._verify))
                if isinstance(self._verify, Path)
                else self._verify
            )
            self._http = httpx.AsyncClient(
                base_url=self.url, verify=verify, timeout=self.timeout_s,
                # a proxy set for the machine must not see the device's keystrokes
                trust_env=False,
            )  # fmt: skip

    async def aclose(self) -> None:
        """Close the HTTP client; safe to call twice."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- authentication ---------------------------------------------------------------------
    async def authenticate(self) -> str:
        """Fetch a new token from ``POST /api/v1/auth`` (no Origin header, as TinyPilot
        demands) and use it from now on."""
        response = await self._send("POST", "/api/v1/auth", auth=False)
        if response.status_code == 410:
            # TinyPilot Pro 3.2 replaced these tokens with API keys
            raise Refused(
                f"the TinyPilot at {self.url} hands out no API tokens any more (410: "
                f"{_excerpt(response)}): create an API key on it (System, Automation) and give "
                "it as the device's password (password_env or password_file)"
            )
        if response.status_code != 200:
            raise _refused(response, "the device refused to hand out an API token")
        try:
            token = response.json()["token"]
        except (ValueError, KeyError, TypeError) as err:
            raise DeviceFailed(
                f"{self.url} answered POST /api/v1/auth without a token: is it a TinyPilot "
                f"with the REST API? ({_excerpt(response)})"
            ) from err
        if not isinstance(token, str) or not token:
            raise DeviceFailed(f"{self.url} answered POST /api/v1/auth with an empty token")
        self._token = token
        self.token_fetches += 1
        return token

    async def _credential(self) -> str:
        if self.key is not None:
            return self.key
        async with self._token_lock:
            if self._token is None:
                await self.authenticate()
            assert self._token is not None
            return self._token

    # -- the API ----------------------------------------------------------------------------
    async def screenshot(self) -> bytes:
        """The target's screen as JPEG; :class:`NoSignal` on a 204."""
        response = await self._request("GET", "/api/v1/screenshot")
        if response.status_code == 204:
            raise NoSignal(
                f"{NO_SIGNAL}: the TinyPilot at {self.url} receives no video from the target "
                "machine; check that it is on and that the HDMI cable is connected"
            )
        if not response.content:
            raise DeviceFailed(f"{self.url} answered an empty screenshot")
        return response.content

    async def keystroke(self, code: str, **modifiers: bool) -> None:
        """Press and release ``code`` (a ``KeyboardEvent.code`` name) with the modifiers named
        ``shiftLeft``, ``altRight``, ... held."""
        await self._request("POST", "/api/v1/keystroke", json={"code": code, **modifiers},
                            what="keystroke")  # fmt: skip

    async def mouse_event(
        self,
        buttons: int,
        relative_x: float,
        relative_y: float,
        vertical_wheel: int = 0,
        horizontal_wheel: int = 0,
    ) -> None:
        """Put the pointer at ``relative_x``, ``relative_y`` (0.0-1.0 of the screen) with the
        ``buttons`` bitmask pressed (1 left, 2 right, 4 middle) and turn the wheels one notch
        (-1, 0, 1; vertical -1 is up)."""
        body = {"buttons": buttons, "relativeX": relative_x, "relativeY": relative_y,
                "verticalWheelDelta": vertical_wheel,
                "horizontalWheelDelta": horizontal_wheel}  # fmt: skip
        await self._request("POST", "/api/v1/mouseEvent", json=body, what="mouse event")

    async def paste(self, text: str, language: str) -> None:
        """Have the device type ``text`` for a target using the layout ``language``."""
        await self._request("POST", "/api/v1/paste", json={"text": text, "language": language},
                            what="paste")  # fmt: skip

    # -- plumbing ---------------------------------------------------------------------------
    async def _request(
        self, method: str, path: str, *, json: dict[str, Any] | None = None, what: str = ""
    ) -> httpx.Response:
        credential = await self._credential()
        response = await self._send(method, path, json=json, credential=credential)
        if response.status_code in (401, 403) and self.key is None:
            # the device restarted and forgot its tokens: fetch one, try once more
            async with self._token_lock:
                if self._token == credential:
                    self._token = None
                    await self.authenticate()
                credential = self._token or credential
            response = await self._send(method, path, json=json, credential=credential)
        if response.status_code in (200, 204):
            return response
        if response.status_code in (401, 403):
            raise _refused(response, "the device refused the API " +
                           ("key" if self.key is not None else "token"))  # fmt: skip
        if response.status_code == 400:
            raise BadRequest(f"the TinyPilot refused the {what or path}: {_excerpt(response)}")
        if response.status_code == 404:
            raise DeviceFailed(
                f"{self.url} has no {path}: is it a TinyPilot with the REST API enabled "
                "(TinyPilot Pro with an automation license)?"
            )
        raise DeviceFailed(
            f"the TinyPilot at {self.url} failed the {what or path} "
            f"({response.status_code}): {_excerpt(response)}"
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        credential: str | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        if self._http is None:
            raise DeviceFailed(f"the client of {self.url} is closed: open it first")
        headers = {"Authorization": f"Bearer {credential}"} if auth and credential else {}
        try:
            return await self._http.request(method, path, json=json, headers=headers)
        except httpx.TimeoutException as err:
            raise Timeout(
                f"the TinyPilot at {self.url} did not answer {method} {path} within "
                f"{self.timeout_s:g} s"
            ) from err
        except httpx.HTTPError as err:
            raise Unreachable(
                f"cannot reach the TinyPilot at {self.url}: {err or type(err).__name__}; check "
                "the address and that the device is on the network"
            ) from err


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_MAX_SHOWN] or f"HTTP {response.status_code} with no message"


def _refused(response: httpx.Response, what: str) -> TinyPilotError:
    if response.status_code in (401, 403):
        return Refused(
            f"{what} ({response.status_code}: {_excerpt(response)}); give the device's API key "
            "(password_env or password_file), or let this host fetch tokens"
        )
    return DeviceFailed(f"{what} ({response.status_code}): {_excerpt(response)}")
