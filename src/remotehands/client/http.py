"""Sending requests: httpx, credentials, and the translation of everything that goes wrong.

httpx errors and error answers enter the SDK here and only here, and leave as the
:mod:`remotehands.errors` tree:

- ``{"error": code, "details": text}`` answers -> :func:`remotehands.errors.error_from_wire`;
- other error answers (a proxy's 502, a framework's ``{"detail": ...}``) -> the error of that
  HTTP status;
- connection refused or unknown host -> :class:`DeviceOfflineError` naming the address;
- no answer in time -> :class:`DeviceTimeoutError`; a bad URL -> :class:`ConfigError`.

:class:`SyncHTTP` and :class:`AsyncHTTP` differ only in ``await``; what to send and how to read
the answer is shared (:mod:`remotehands.client.request`).
"""

from __future__ import annotations

import socket
import types
from collections.abc import AsyncIterable, Iterable
from typing import Any, ClassVar, Self

import httpx
import orjson

from remotehands import __version__
from remotehands.client.request import Request
from remotehands.client.uploads import UploadBody
from remotehands.errors import (
    AuthError,
    ConfigError,
    DeviceError,
    DeviceOfflineError,
    DeviceTimeoutError,
    RemoteHandsError,
    ValidationError,
    error_class_for_status,
    error_from_wire,
)

__all__ = ["AsyncHTTP", "HTTPBase", "SyncHTTP", "error_from_response", "error_from_transport"]


def _framework_detail(body: Any) -> str | None:
    """The ``detail`` of a Starlette/FastAPI error body, as text."""
    if not isinstance(body, dict) or "detail" not in body:
        return None
    detail = body["detail"]
    if isinstance(detail, list):  # FastAPI's request validation errors
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query"))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts) or str(detail)
    return str(detail)


def error_from_response(response: httpx.Response) -> RemoteHandsError:
    """The error an error answer stands for."""
    body: Any = None
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code: str = body["error"]
        details = body.get("details")
        return error_from_wire(code, str(details) if details else code)
    request = response.request
    what = f"{request.method} {request.url.path}"
    detail = _framework_detail(body)
    if detail is None:
        text = response.text.strip()[:200] if body is None else ""
        detail = f"{what} answered HTTP {response.status_code} {response.reason_phrase}"
        if text:
            detail += f": {text}"
    # an answer without our body (the framework's, a proxy's) is read by its status
    cls = error_class_for_status(response.status_code)
    if cls is None:
        cls = ValidationError if 400 <= response.status_code < 500 else DeviceError
    return cls(detail)


def _reason(err: BaseException) -> str:
    """A short cause of a failed connection; the OS error may sit deep in the cause chain."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        cause = cause.__cause__ or cause.__context__
    text = str(err) or type(err).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text


def error_from_transport(
    err: httpx.HTTPError, base_url: str, role: str, timeout_s: float
) -> RemoteHandsError:
    """The error a failed exchange with ``base_url`` (the ``role``: agent or server) stands for."""
    if isinstance(err, httpx.ConnectTimeout):
        return DeviceTimeoutError(
            f"cannot reach {base_url}: no connection within {timeout_s:g} s — is the address right?"
        )
    if isinstance(err, httpx.TimeoutException):
        return DeviceTimeoutError(f"{base_url} did not answer within {timeout_s:g} s")
    if isinstance(err, httpx.ConnectError):
        reason = _reason(err)
        hint = "is the address right?" if reason == "unknown host" else f"is the {role} running?"
        return DeviceOfflineError(f"cannot reach {base_url}: {reason} — {hint}")
    if isinstance(err, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigError(f"bad {role} URL {base_url!r}: {err}")
    return DeviceError(f"the exchange with {base_url} failed: {_reason(err)}")


class HTTPBase:
    """What both flavours share: the address, credentials and how a request is laid out.

    Subclasses say how to log in (:meth:`_login_request`) and call themselves the ``role``
    (``agent``/``server``) in messages.
    """

    role: ClassVar[str] = "server"

    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        url = base_url.strip().rstrip("/")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as err:
            raise ConfigError(f"bad {self.role} URL {base_url!r}: {err}") from err
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(
                f"bad {self.role} URL {base_url!r}: give http:// or https:// and a host, "
                "for example http://127.0.0.1:8082"
            )
        self.base_url = url
        self.timeout = timeout
        self._token = token

    @property
    def token(self) -> str | None:
        """The bearer token in use (given, or obtained by :meth:`login`)."""
        return self._token

    def _can_login(self) -> bool:
        return False

    def _login_request(self) -> Request:
        raise ConfigError(f"no credentials to log in to the {self.role} at {self.base_url}")

    def _accept_login(self, result: Any) -> Any:
        token = result.get("token") if isinstance(result, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the {self.role} at {self.base_url} answered the login without token")
        self._token = token
        return result

    def _needs_login(self, request: Request) -> bool:
        return request.auth and self._token is None and self._can_login()

    def _retry_with_login(self, request: Request, response: httpx.Response) -> bool:
        # An expired or revoked token: log in again, once. A 401 means the request was refused
        # before it did anything, so sending it again is safe.
        return response.status_code == 401 and request.auth and self._can_login()

    def _args(self, request: Request) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if request.auth and self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        args: dict[str, Any] = {
            "headers": headers,
            "timeout": self.timeout + request.extra_s,
        }
        if request.query:
            args["params"] = dict(request.query)
        if request.json is not None:
            headers["Content-Type"] = "application/json"
            args["content"] = orjson.dumps(request.json)
        if request.content is not None:
            # An explicit length: the body streams with it (and never chunked), as the
            # device must know an image's size before its first byte.
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(request.content.size)
            args["content"] = self._stream(request.content)
        return args

    def _stream(self, body: UploadBody) -> Iterable[bytes] | AsyncIterable[bytes]:
        """The payload as this flavour's client iterates it (read from its start again)."""
        return iter(body)

    def _read(self, request: Request, response: httpx.Response) -> Any:
        if not response.is_success:
            err = error_from_response(response)
            if isinstance(err, AuthError) and self._token is None and not self._can_login():
                err = AuthError(f"{err.details} (no credentials were given)")
            raise err
        if response.status_code == 204 or not response.content:
            return request.parse(None)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as err:
            raise DeviceError(
                f"{request.method} {request.path} on {self.base_url} answered with something "
                f"that is not JSON (HTTP {response.status_code}) — is this a remotehands "
                f"{self.role}?"
            ) from err
        return request.parse(body)

    def _fail(self, err: httpx.HTTPError, request: Request) -> RemoteHandsError:
        return error_from_transport(err, self.base_url, self.role, self.timeout + request.extra_s)


def _user_agent() -> dict[str, str]:
    return {"User-Agent": f"remotehands/{__version__}"}


class SyncHTTP(HTTPBase):
    """Blocking requests over one ``httpx.Client`` (closed by :meth:`close` or ``with``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout)
        self._http = httpx.Client(
            base_url=self.base_url, transport=transport, headers=_user_agent()
        )

    def _exchange(self, request: Request) -> httpx.Response:
        try:
            return self._http.request(request.method, request.path, **self._args(request))
        except httpx.HTTPError as err:
            raise self._fail(err, request) from err

    def _send(self, request: Request) -> Any:
        if self._needs_login(request):
            self.login()
        response = self._exchange(request)
        if self._retry_with_login(request, response):
            self.login()
            response = self._exchange(request)
        return self._read(request, response)

    def login(self) -> Any:
        """Log in with the credentials given to the constructor; return the login answer
        (``token``, ``expires_in_s``). Done on first use and again when the token expires."""
        request = self._login_request()
        return self._accept_login(self._read(request, self._exchange(request)))

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


class AsyncHTTP(HTTPBase):
    """Requests over one ``httpx.AsyncClient`` (closed by :meth:`aclose` or ``async with``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, headers=_user_agent()
        )

    def _stream(self, body: UploadBody) -> Iterable[bytes] | AsyncIterable[bytes]:
        return body.__aiter__()

    async def _exchange(self, request: Request) -> httpx.Response:
        try:
            return await self._http.request(request.method, request.path, **self._args(request))
        except httpx.HTTPError as err:
            raise self._fail(err, request) from err

    async def _send(self, request: Request) -> Any:
        if self._needs_login(request):
            await self.login()
        response = await self._exchange(request)
        if self._retry_with_login(request, response):
            await self.login()
            response = await self._exchange(request)
        return self._read(request, response)

    async def login(self) -> Any:
        """Log in with the credentials given to the constructor; return the login answer."""
        request = self._login_request()
        return self._accept_login(self._read(request, await self._exchange(request)))

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()
