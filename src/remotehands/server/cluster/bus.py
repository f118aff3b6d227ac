"""Small parts every cluster component uses: a fire-and-forget outbox for code that cannot
await (a revocation, a failed login, an event), and safe subscription callbacks.

Publishing through the outbox never blocks and never fails: while NATS is away the messages
are dropped and counted (what they say is either repaired by the next presence announcement
or bounded by a short cache lifetime), so a replica cut off from the others keeps serving its
own devices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from nats.aio.msg import Msg

from remotehands.errors import RemoteHandsError
from remotehands.server.cluster.connection import NatsConnection
from remotehands.server.cluster.wire import pack, unpack

__all__ = ["Handler", "Outbox", "guarded"]

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 10_000
"""Messages waiting to be written before new ones are dropped."""
PUBLISH_TIMEOUT_S = 2.0

Handler = Callable[[dict[str, Any], Msg], Awaitable[None]]
"""A subscription handler: the parsed message and the NATS message (for its reply subject)."""


def guarded(name: str, handler: Handler) -> Callable[[Msg], Awaitable[None]]:
    """A nats-py callback that parses each message and hands it to ``handler``: a message that
    does not parse, or a handler that fails, is logged and dropped, never raised into the
    client's loop."""

    async def callback(msg: Msg) -> None:
        try:
            message = unpack(msg.data)
        except RemoteHandsError as err:
            logger.warning("cluster %s: dropped a message on %s: %s", name, msg.subject, err)
            return
        try:
            await handler(message, msg)
        except RemoteHandsError as err:
            logger.warning("cluster %s: dropped a message on %s: %s", name, msg.subject, err)
        except Exception:
            logger.exception("cluster %s: handling a message on %s failed", name, msg.subject)

    return callback


class Outbox:
    """Messages to publish, queued without waiting and written by one task in order."""

    def __init__(self, nats: NatsConnection) -> None:
        self._nats = nats
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(OUTBOX_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Messages lost: NATS away or the queue full."""

    def send(self, subject: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for ``subject``; dropped (and counted) while NATS is away."""
        if not self._nats.up:
            self.dropped += 1
            return
        self.send_packed(subject, pack(message))

    def send_packed(self, subject: str, data: bytes) -> None:
        """Queue ``data`` (a message :func:`pack` made) for ``subject``, as :meth:`send`."""
        if not self._nats.up:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((subject, data))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _drain(self) -> None:
        client = self._nats.client
        while True:
            subject, data = await self._queue.get()
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    await client.publish(subject, data)
            except Exception as err:  # noqa: BLE001 - a lost message is counted, never raised
                self.dropped += 1
                logger.debug("cluster outbox: %s not published: %s", subject, err)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._drain(), name="cluster-outbox")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # what the stop itself said (devices going offline) still reaches the other replicas
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                while not self._queue.empty() and self._nats.up:
                    await self._nats.client.publish(*self._queue.get_nowait())
                if self._nats.up:
                    await self._nats.client.flush()
        except Exception as err:  # noqa: BLE001 - the stop goes on without them
            logger.info(
                "cluster outbox: %d message(s) not sent at stop: %s", self._queue.qsize(), err
            )
