"""Clients of one standalone agent's native API (the desktopkit-like face)::

    from remotehands.client import AgentClient

    with AgentClient("http://127.0.0.1:8082", password="...") as agent:
        agent.click(x=100, y=200)
        agent.screenshot(format="png").save("screen.png")

With a password the client logs in (``POST /auth/login``) on first use and again when its token
expires; with a token it sends that; with neither it expects an agent whose operator left the
native face open. With ``websocket=True`` the actions go over one persistent WebSocket
(:mod:`remotehands.client.socket`) instead of a request each; logging in stays HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import httpx

from remotehands.client.actions import ActionMethods
from remotehands.client.http import AsyncHTTP, SyncHTTP
from remotehands.client.request import Request, action_request
from remotehands.client.socket import AsyncActionSocket, NoSocketError, SyncActionSocket

__all__ = ["AgentClient", "AsyncAgentClient"]


class _AgentLogin:
    """Logging in to an agent: ``POST /auth/login {"password"}``."""

    base_url: str
    _password: str | None

    def _can_login(self) -> bool:
        return self._password is not None

    def _login_request(self) -> Request:
        return Request("POST", "/auth/login", json={"password": self._password}, auth=False)


def _health() -> Request:
    return Request("GET", "/health", auth=False)


def _logout() -> Request:
    return Request("POST", "/auth/logout")


class AgentClient(_AgentLogin, SyncHTTP, ActionMethods[Any]):
    """A standalone agent, blocking calls; every action is a method (see :class:`ActionMethods`).

    ``timeout`` (seconds) bounds each request, plus whatever the action itself is asked to wait
    (``timeout_ms``, ``duration_ms``...). ``transport`` lets tests and embedders pass an httpx
    transport (``httpx.MockTransport``, ``httpx.ASGITransport``...).
    """

    role = "agent"

    def __init__(
        self,
        base_url: str,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        websocket: bool = False,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout, transport=transport)
        self._password = password
        self._socket = (
            SyncActionSocket(base_url, lambda: self._token, timeout) if websocket else None
        )

    def call(self, action: str, /, **params: Any) -> Any:
        """Carry out ``action`` with ``params`` (see :meth:`ActionMethods.call`)."""
        if self._socket is None:
            return self._send(action_request(action, params))
        if self._token is None and self._can_login():
            self.login()
        try:
            return self._socket.call(action, params)
        except NoSocketError:
            self._socket = None  # an older agent: HTTP from now on
            return self._send(action_request(action, params))

    def close(self) -> None:
        """Close the WebSocket (if one is open) and the HTTP connections."""
        if self._socket is not None:
            self._socket.close()
        super().close()

    def health(self) -> Any:
        """``{"status": "ok"}`` when the agent answers (no credentials needed)."""
        return self._send(_health())

    def logout(self) -> Any:
        """Invalidate the token in use."""
        result = self._send(_logout())
        self._token = None
        return result


class AsyncAgentClient(_AgentLogin, AsyncHTTP, ActionMethods[Awaitable[Any]]):
    """:class:`AgentClient` for asyncio: the same methods, each returning an awaitable."""

    role = "agent"

    def __init__(
        self,
        base_url: str,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        websocket: bool = False,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout, transport=transport)
        self._password = password
        self._socket = (
            AsyncActionSocket(base_url, lambda: self._token, timeout) if websocket else None
        )

    async def call(self, action: str, /, **params: Any) -> Any:
        """Carry out ``action`` with ``params`` (see :meth:`ActionMethods.call`)."""
        if self._socket is None:
            return await self._send(action_request(action, params))
        if self._token is None and self._can_login():
            await self.login()
        try:
            return await self._socket.call(action, params)
        except NoSocketError:
            self._socket = None  # an older agent: HTTP from now on
            return await self._send(action_request(action, params))

    async def aclose(self) -> None:
        """Close the WebSocket (if one is open) and the HTTP connections."""
        if self._socket is not None:
            await self._socket.aclose()
        await super().aclose()

    async def health(self) -> Any:
        """``{"status": "ok"}`` when the agent answers (no credentials needed)."""
        return await self._send(_health())

    async def logout(self) -> Any:
        """Invalidate the token in use."""
        result = await self._send(_logout())
        self._token = None
        return result
