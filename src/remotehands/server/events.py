"""The event bus: device state changes pushed to whoever watches (the ``/v1/events`` stream).

Publishing never blocks and never fails: each subscriber has a bounded queue, and a subscriber
too slow to drain it loses the events that do not fit (they are counted, per subscriber and in
total), so one stuck client never holds up the agent links that publish.

An event is a JSON-ready dict::

    {"type": "device.online", "device_id": "dev_...", "at": "2026-05-19T10:15:00.123456Z", ...}

Publishers add ``tags`` (the device's tags) so that subscribers limited to some tags can be
served without a database lookup per event. The shape of each type is a model of
:mod:`remotehands.protocol.events`.

:class:`EventBus` is the interface publishers and subscribers use; :class:`InProcessEventBus`
serves the subscribers of this process (the default, one replica);
:class:`~remotehands.server.cluster.events.NatsEventBus` spans several replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "EventBus",
    "EventSubscription",
    "InProcessEventBus",
    "Subscription",
    "utc_now_iso",
]

DEFAULT_QUEUE_SIZE = 1024
"""Events a subscriber may have waiting before new ones are dropped for it."""


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with a ``Z``, the form every event's ``at`` takes."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class EventSubscription(Protocol):
    """One subscriber's stream of events, as :meth:`EventBus.subscribe` hands it out."""

    dropped: int
    """Events this subscriber lost because it read too slowly."""

    def close(self) -> None:
        """Stop receiving; a waiting :meth:`get` returns ``None`` and iteration ends."""
        ...

    async def get(self) -> dict[str, Any] | None:
        """The next event, or ``None`` once the subscription is closed."""
        ...

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """The events until the subscription or the bus closes."""
        ...


class EventBus(Protocol):
    """Fan-out of events to subscribers: what the agent links, the routes and the events stream
    rely on. Publishing never blocks and never fails."""

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every subscriber without waiting; ``at`` is added when missing.
        Subscribers must treat the event as read-only."""
        ...

    def subscribe(
        self, queue_size: int | None = None, types: Collection[str] | None = None
    ) -> AbstractContextManager[EventSubscription]:
        """A subscription that lives for the ``with`` block, limited to ``types`` when given."""
        ...


class Subscription:
    """One subscriber's queue of events on an :class:`InProcessEventBus`; iterate it, or call
    :meth:`get`.

    Iteration ends when the bus closes or the subscription is closed.
    """

    def __init__(
        self, bus: InProcessEventBus, queue_size: int, types: frozenset[str] | None = None
    ) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(queue_size)
        self.types = types
        """The event types this subscriber gets; None: all."""
        self.closed = False
        self.dropped = 0
        """Events this subscriber lost because its queue was full."""

    def _offer(self, event: dict[str, Any]) -> bool:
        if self.types is not None and event.get("type") not in self.types:
            return True
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Stop receiving; a waiting :meth:`get` returns ``None``."""
        if self.closed:
            return
        self.closed = True
        self._bus._subscribers.discard(self)
        # Make room for the end marker even when the queue is full: the reader is going away.
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def get(self) -> dict[str, Any] | None:
        """The next event, or ``None`` once the subscription is closed."""
        if self.closed and self._queue.empty():
            return None
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while (event := await self.get()) is not None:
            yield event


class InProcessEventBus:
    """The :class:`EventBus` of one process; an async context manager.

    Leaving the context closes every subscription, which ends their streams.
    """

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self.published = 0
        self.dropped = 0
        """Events lost by slow subscribers, all subscribers together."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for subscription in list(self._subscribers):
            subscription.close()

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every subscriber without waiting; ``at`` is added when missing.

        Subscribers must treat the event as read-only: they all share one dict.
        """
        if "at" not in event:
            event = {**event, "at": utc_now_iso()}
        self.published += 1
        for subscription in self._subscribers:
            if not subscription._offer(event):
                self.dropped += 1

    @contextmanager
    def subscribe(
        self, queue_size: int | None = None, types: Collection[str] | None = None
    ) -> Iterator[Subscription]:
        """A subscription that lives for the ``with`` block; ``types`` limits it to those event
        types (the others are never queued for it)."""
        subscription = Subscription(
            self, queue_size or self.queue_size, frozenset(types) if types is not None else None
        )
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            subscription.close()
