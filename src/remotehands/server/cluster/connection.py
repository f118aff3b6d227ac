"""The NATS connection of one replica: opened at start (or a clear error), reconnecting by
itself while the replica runs.

Opening fails with :class:`~remotehands.errors.ConfigError` naming NATS and what to do when no
server answers within :data:`CONNECT_TIMEOUT_S`, so that ``remotehands server`` exits non-zero
at once instead of serving a replica that cannot reach the others. Once open, the client
reconnects forever (nats-py's own loop, with jitter); while it is away :attr:`NatsConnection.up`
is False and what needs another replica fails fast instead of waiting for its timeout.

:meth:`NatsConnection.request` is the replicas' request and reply: one inbox subscription of
the connection takes every reply, and a request in flight when the connection is lost fails
then with :class:`NatsLost`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Self

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from remotehands.errors import ConfigError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "NatsConnection",
    "NatsLost",
    "default_replica_id",
    "safe_nats_url",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
"""The longest the first connection may take at start."""
RECONNECT_WAIT_S = 1
"""Seconds between reconnection attempts while running (nats-py adds jitter)."""


NO_RESPONDERS = "503"
"""The status NATS answers a request with when nobody subscribes to its subject."""


class NatsLost(nats.errors.Error):
    """The connection was lost (or is away) while a request waited for its reply."""


def default_replica_id() -> str:
    """``HOST-PID`` with anything a NATS subject cannot hold replaced by ``-``."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host[:40] or 'replica'}-{os.getpid()}"


def safe_nats_url(url: str) -> str:
    """``url`` without credentials, for messages and logs."""
    shown = []
    for server in url.split(","):
        scheme, sep, rest = server.strip().partition("://")
        shown.append(f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else server.strip())
    return ",".join(shown)


class NatsConnection:
    """The replica's NATS client; an async context manager (:meth:`open` connects)."""

    def __init__(self, url: str, replica_id: str) -> None:
        self.url = url
        self.replica_id = replica_id
        self.client = Client()
        self.disconnects = 0
        """How often the connection was lost while running."""
        self._opened = False
        self._closing = False
        self._lost: asyncio.Future[None] | None = None
        self._on_reconnect: list[Callable[[], None]] = []
        self._inbox = ""
        self._replies: Subscription | None = None
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._tokens = itertools.count()

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the connection comes back (subscriptions are restored by
        the client; what was said meanwhile is for ``callback`` to repeat)."""
        self._on_reconnect.append(callback)

    def lost(self) -> asyncio.Future[None]:
        """A future that is done when the connection is lost next (never cancel it: it is
        shared by every waiter)."""
        if self._lost is None or self._lost.done():
            self._lost = asyncio.get_running_loop().create_future()
        return self._lost

    async def request(self, subject: str, data: bytes, timeout_s: float) -> bytes:
        """Publish ``data`` on ``subject`` and return the first reply's data.

        Raises :class:`TimeoutError` when no reply came within ``timeout_s``,
        :class:`nats.errors.NoRespondersError` at once when nobody subscribes to ``subject``,
        and :class:`NatsLost` when the connection is away or goes before the reply.

        Lighter than nats-py's own ``request`` on the path every action through another
        replica takes: no future wrapped in ``wait_for``, no random token per request.
        """
        if not self.up:
            raise NatsLost("NATS is away")
        token = str(next(self._tokens))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            await self.client.publish(subject, data, reply=self._inbox + token)
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            del self._waiting[token]

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._inbox) :])
        if future is None or future.done():
            return  # its asker gave up
        headers = msg.headers
        if not msg.data and headers and headers.get("Status") == NO_RESPONDERS:
            future.set_exception(nats.errors.NoRespondersError())
        else:
            future.set_result(msg.data)

    def _fail_waiting(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NatsLost("the connection to NATS was lost"))

    @property
    def up(self) -> bool:
        """Whether the connection is established right now."""
        return self.client.is_connected

    async def open(self, timeout_s: float = CONNECT_TIMEOUT_S) -> Self:
        """Connect; raises :class:`ConfigError` when NATS does not answer within ``timeout_s``."""
        shown = safe_nats_url(self.url)
        last_error: list[BaseException] = []

        async def on_error(err: Exception) -> None:
            last_error[:] = [err]
            if self._opened:
                logger.warning("NATS %s: %s", shown, err)

        async def on_disconnect() -> None:
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
            self._fail_waiting()
            if self._opened and not self._closing:
                self.disconnects += 1
                logger.warning("NATS %s: connection lost, reconnecting", shown)

        async def on_reconnect() -> None:
            logger.warning("NATS %s: reconnected", shown)
            for callback in self._on_reconnect:
                try:
                    callback()
                except Exception:
                    logger.exception("NATS %s: a reconnection callback failed", shown)

        try:
            async with asyncio.timeout(timeout_s):
                await self.client.connect(
                    servers=[server.strip() for server in self.url.split(",")],
                    name=f"remotehands-{self.replica_id}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RECONNECT_WAIT_S,
                    connect_timeout=max(1, min(2, int(timeout_s))),
                    ping_interval=5,
                    max_outstanding_pings=2,
                    # what is published while away is dropped, not replayed later: a request
                    # fails fast instead (see :attr:`up`)
                    pending_size=1024 * 1024,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                )
        except (TimeoutError, OSError, nats.errors.Error) as err:
            await self._abandon()
            cause = last_error[0] if last_error else err
            raise ConfigError(
                f"cannot connect to NATS at {shown} within {timeout_s:g} s "
                f"({cause or 'no answer'}): "
                "start nats-server there (Debian: `apt-get install nats-server`), or correct "
                "--nats-url / REMOTEHANDS_NATS_URL, or unset it to run one server alone"
            ) from err
        try:
            # every reply of this connection's requests, to one subscription (restored by
            # nats-py after a reconnection)
            self._inbox = self.client.new_inbox() + "."
            self._replies = await self.client.subscribe(self._inbox + "*", cb=self._on_reply)
        except (TimeoutError, OSError, nats.errors.Error) as err:
            await self._abandon()
            raise ConfigError(
                f"connected to NATS at {shown} but could not subscribe there ({err}): check "
                "that its permissions let this user subscribe to _INBOX.>"
            ) from err
        self._opened = True
        return self

    async def _abandon(self) -> None:
        try:
            async with asyncio.timeout(2.0):
                await self.client.close()
        except Exception:
            logger.debug("NATS client close after a failed connect", exc_info=True)

    async def close(self) -> None:
        """Flush what is pending and close (within a few seconds)."""
        if self.client.is_closed:
            return
        self._closing = True
        try:
            async with asyncio.timeout(3.0):
                if self.client.is_connected:
                    await self.client.drain()
                else:
                    await self.client.close()
        except Exception:
            logger.warning("NATS close did not finish cleanly", exc_info=True)
            await self._abandon()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
