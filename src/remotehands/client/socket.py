"""Actions over one persistent WebSocket to an agent's native face (``/ws``), async and sync.

An HTTP request per action pays a request and a response parse on both sides each time; over
the socket an action is one small JSON message each way (``remotehands.agent.faces.actions_ws``
describes them). Compression is off: it costs more than it saves on small messages and on
JPEGs. One action is in flight at a time per socket, in call order. Errors leave as the
:mod:`remotehands.errors` tree, as over HTTP: an error answer as its own error, a socket that
cannot open or breaks as :class:`DeviceOfflineError`, no answer in time as
:class:`DeviceTimeoutError`, a refused token as :class:`AuthError`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)

from remotehands.client.blocking import BlockingWebSocket
from remotehands.client.request import action_request, find_action, validate_params, wait_seconds
from remotehands.errors import (
    AuthError,
    DeviceOfflineError,
    DeviceTimeoutError,
    RemoteHandsError,
    UnsupportedError,
    error_from_wire,
)

__all__ = ["AsyncActionSocket", "NoSocketError", "SyncActionSocket", "socket_url"]

_UNAUTHORIZED: Final = 4401


def socket_url(base_url: str) -> str:
    """The ``ws(s)://.../ws`` address of the agent at ``base_url``."""
    scheme, _, rest = base_url.rstrip("/").partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws"


def _message(
    ident: int, action: str, params: dict[str, Any]
) -> tuple[str, Callable[[Any], Any], float]:
    spec = find_action(action)
    values = validate_params(spec, params)
    parse = action_request(spec.name, params).parse
    text = orjson.dumps({"id": ident, "action": spec.name, "params": values}).decode()
    return text, parse, wait_seconds(values)


def _answer(raw: str | bytes, parse: Callable[[Any], Any]) -> Any:
    reply = orjson.loads(raw)
    if isinstance(reply.get("error"), str):
        raise error_from_wire(reply["error"], str(reply.get("details") or reply["error"]))
    return parse(reply.get("result"))


class NoSocketError(UnsupportedError):
    """The peer has no WebSocket for actions (an older agent or server): use HTTP."""


def _refused(err: Exception, url: str) -> RemoteHandsError:
    if isinstance(err, InvalidStatus) and err.response.status_code in (404, 405):
        return NoSocketError(f"{url} takes no WebSocket (an older version): use HTTP")
    if isinstance(err, InvalidStatus) and err.response.status_code in (401, 403):
        return AuthError(f"the agent at {url} refused the token: log in again")
    if (
        isinstance(err, ConnectionClosed)
        and err.rcvd is not None
        and err.rcvd.code == _UNAUTHORIZED
    ):
        return AuthError(f"the agent at {url} refused the token: log in again")
    return DeviceOfflineError(f"cannot talk to {url} over a WebSocket: {err}")


class AsyncActionSocket:
    """One WebSocket to an agent, opened on the first call and again after a break."""

    def __init__(self, base_url: str, token: Callable[[], str | None], timeout: float) -> None:
        self.url = socket_url(base_url)
        self._token = token
        self.timeout = timeout
        self._conn: ClientConnection | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    async def _open(self) -> ClientConnection:
        if self._conn is None:
            token = self._token()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                async with asyncio.timeout(self.timeout):
                    self._conn = await connect_async(
                        self.url, additional_headers=headers, compression=None, max_size=None
                    )
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"no WebSocket to {self.url} within {self.timeout:g} s"
                ) from err
            except (OSError, WebSocketException) as err:
                raise _refused(err, self.url) from err
        return self._conn

    async def call(self, action: str, params: dict[str, Any]) -> Any:
        """Carry out ``action`` with ``params`` over the socket."""
        text, parse, extra_s = _message(next(self._ids), action, params)
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._open()
                try:
                    async with asyncio.timeout(self.timeout + extra_s):
                        await conn.send(text)
                        raw = await conn.recv()
                    return _answer(raw, parse)
                except TimeoutError as err:
                    await self.aclose()  # a late answer would be read as the next one's
                    raise DeviceTimeoutError(
                        f"{self.url} did not answer {action} within {self.timeout + extra_s:g} s"
                    ) from err
                except ConnectionClosed as err:
                    self._conn = None
                    if attempt == 2 or (err.rcvd is not None and err.rcvd.code == _UNAUTHORIZED):
                        raise _refused(err, self.url) from err
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the socket, if open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class SyncActionSocket:
    """:class:`AsyncActionSocket` for blocking code: it reads its answers on the calling
    thread (:class:`~remotehands.client.blocking.BlockingWebSocket`), with no thread of its own
    to wake for each one."""

    def __init__(self, base_url: str, token: Callable[[], str | None], timeout: float) -> None:
        self.url = socket_url(base_url)
        self._token = token
        self.timeout = timeout
        self._conn: BlockingWebSocket | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _open(self) -> BlockingWebSocket:
        if self._conn is None:
            token = self._token()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                self._conn = BlockingWebSocket.connect(
                    self.url, headers=headers, timeout=self.timeout
                )
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"no WebSocket to {self.url} within {self.timeout:g} s"
                ) from err
            except (OSError, WebSocketException, InvalidHandshake) as err:
                raise _refused(err, self.url) from err
        return self._conn

    def call(self, action: str, params: dict[str, Any]) -> Any:
        """Carry out ``action`` with ``params`` over the socket."""
        text, parse, extra_s = _message(next(self._ids), action, params)
        with self._lock:
            for attempt in (1, 2):
                conn = self._open()
                try:
                    conn.send(text)
                    raw = conn.recv(timeout=self.timeout + extra_s)
                    return _answer(raw, parse)
                except TimeoutError as err:
                    self.close()
                    raise DeviceTimeoutError(
                        f"{self.url} did not answer {action} within {self.timeout + extra_s:g} s"
                    ) from err
                except ConnectionClosed as err:
                    self._conn = None
                    if attempt == 2 or (err.rcvd is not None and err.rcvd.code == _UNAUTHORIZED):
                        raise _refused(err, self.url) from err
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the socket, if open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
