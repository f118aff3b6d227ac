"""The :class:`~remotehands.server.events.EventBus` of a replica: every replica's subscribers
see every replica's events.

An event published here goes to this replica's subscribers at once (as on one server) and to
``rh.events`` tagged with this replica's id; each replica hands the events of the others to its
own subscribers and ignores its own echo, so each subscriber gets each event once. While NATS is
away the events of this replica still reach its own subscribers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from remotehands.server.cluster.bus import Outbox, guarded
from remotehands.server.cluster.connection import NatsConnection
from remotehands.server.cluster.wire import PREFIX
from remotehands.server.events import (
    DEFAULT_QUEUE_SIZE,
    InProcessEventBus,
    Subscription,
    utc_now_iso,
)

__all__ = ["EVENTS", "NatsEventBus"]

EVENTS = f"{PREFIX}.events"


class NatsEventBus:
    """Fan-out of events to the subscribers of every replica; an async context manager."""

    def __init__(
        self, nats: NatsConnection, outbox: Outbox, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self._nats = nats
        self._outbox = outbox
        self._local = InProcessEventBus(queue_size)
        self._sub: NatsSubscription | None = None
        self.received = 0
        """Events of other replicas handed to this replica's subscribers."""

    async def __aenter__(self) -> Self:
        await self._local.__aenter__()
        self._sub = await self._nats.client.subscribe(EVENTS, cb=guarded("events", self._on_event))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):  # NATS already closed: nothing to undo
                await self._sub.unsubscribe()
        await self._local.__aexit__(exc_type, exc, tb)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open on this replica."""
        return self._local.subscribers

    @property
    def published(self) -> int:
        """Events handed to this replica's subscribers (its own and the others')."""
        return self._local.published

    @property
    def dropped(self) -> int:
        """Events lost by this replica's slow subscribers."""
        return self._local.dropped

    def publish(self, event: dict[str, Any]) -> None:
        """See :meth:`remotehands.server.events.EventBus.publish`."""
        if "at" not in event:
            event = {**event, "at": utc_now_iso()}
        self._local.publish(event)
        self._outbox.send(EVENTS, {"replica": self._nats.replica_id, "event": event})

    async def _on_event(self, message: dict[str, Any], msg: Msg) -> None:
        event = message.get("event")
        if message.get("replica") == self._nats.replica_id or not isinstance(event, dict):
            return  # our own echo: already handed out
        self.received += 1
        self._local.publish(event)

    @contextmanager
    def subscribe(
        self, queue_size: int | None = None, types: Collection[str] | None = None
    ) -> Iterator[Subscription]:
        """See :meth:`remotehands.server.events.EventBus.subscribe`."""
        with self._local.subscribe(queue_size, types) as subscription:
            yield subscription
