"""Screen streams on the server's side of one agent link.

:class:`LinkWatches` shares one link stream among every server-side consumer of the same
screen and settings: the first consumer sends ``watch`` to the agent, each consumer reads
frames through its own bounded :class:`~remotehands.protocol.streams.DropOldest` queue (a slow
one drops frames and never holds up the others or the link's reader), and the last one to
leave sends ``unwatch``. When the agent ends a stream or the link drops, every consumer's
iteration ends with the error.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from remotehands.errors import DeviceOfflineError, RemoteHandsError, error_from_wire
from remotehands.protocol.link import FrameMessage, StreamEnd, Unwatch, Watch, encode
from remotehands.protocol.streams import DropOldest, Frame

__all__ = ["DEFAULT_DEPTH", "LinkWatches", "ScreenWatch", "WatchKey"]

logger = logging.getLogger(__name__)

DEFAULT_DEPTH = 2
"""Frames a consumer may fall behind before its oldest are dropped."""

WatchKey = tuple[int, float, int]
"""``(screen, rate, quality)``: consumers asking the same share one link stream."""

Send = Callable[[str | bytes], Awaitable[None]]


@dataclass(eq=False)
class ScreenWatch:
    """One link stream and its consumers."""

    stream: int
    key: WatchKey
    consumers: list[DropOldest[Frame]] = field(default_factory=list)
    received: int = 0
    """Frames the agent pushed on this stream."""
    ended: bool = False


class LinkWatches:
    """The screen streams of one agent link; :meth:`handle` takes their messages."""

    def __init__(self, device_id: str, send: Send) -> None:
        self.device_id = device_id
        self._send = send
        self._ids = itertools.count(1)
        self._by_key: dict[WatchKey, ScreenWatch] = {}
        self._by_stream: dict[int, ScreenWatch] = {}
        self._closed: RemoteHandsError | None = None

    @property
    def streams(self) -> list[ScreenWatch]:
        """The link streams open now."""
        return list(self._by_stream.values())

    @contextlib.asynccontextmanager
    async def watch(
        self, screen_id: int = 0, *, rate: float = 30.0, quality: int = 75,
        depth: int = DEFAULT_DEPTH,
    ) -> AsyncIterator[DropOldest[Frame]]:  # fmt: skip
        """Frames of the screen for the block; see
        :meth:`remotehands.server.router.DeviceRouter.watch`."""
        if self._closed is not None:
            raise self._closed
        Watch(stream=0, screen=screen_id, rate=rate, quality=quality)  # checks the settings
        key: WatchKey = (screen_id, float(rate), quality)
        queue: DropOldest[Frame] = DropOldest(depth)
        watch = self._by_key.get(key)
        if watch is None:
            watch = ScreenWatch(next(self._ids), key)
            self._by_key[key] = watch
            self._by_stream[watch.stream] = watch
            watch.consumers.append(queue)
            try:
                await self._send(encode(Watch(stream=watch.stream, screen=screen_id, rate=rate,
                                              quality=quality)))  # fmt: skip
            except BaseException:
                self._forget(watch)
                raise
        else:
            watch.consumers.append(queue)
        try:
            yield queue
        finally:
            queue.close()
            if queue in watch.consumers:
                watch.consumers.remove(queue)
            if not watch.consumers and not watch.ended:
                self._forget(watch)
                if self._closed is None:
                    with contextlib.suppress(RemoteHandsError):
                        await self._send(encode(Unwatch(stream=watch.stream)))

    def _forget(self, watch: ScreenWatch) -> None:
        watch.ended = True
        if self._by_key.get(watch.key) is watch:
            del self._by_key[watch.key]
        self._by_stream.pop(watch.stream, None)

    def handle(self, message: dict[str, Any]) -> None:
        """A ``frame`` or ``stream_end`` from the agent (never waits)."""
        if message["type"] == "frame":
            frame = FrameMessage.model_validate(message)
            watch = self._by_stream.get(frame.stream)
            if watch is None:
                return  # crossed an unwatch on the wire
            watch.received += 1
            item = Frame(frame.seq, frame.at, frame.width, frame.height, frame.format, frame.data)
            for queue in watch.consumers:
                queue.put(item)
        elif message["type"] == "stream_end":
            end = StreamEnd.model_validate(message)
            watch = self._by_stream.get(end.stream)
            if watch is None:
                return
            self._forget(watch)
            error = (
                error_from_wire(end.error.get("error", "device_error"),
                                end.error.get("details", "the agent ended the stream"))
                if end.error is not None
                else None
            )  # fmt: skip
            for queue in watch.consumers:
                queue.close(error)

    def close(self, error: RemoteHandsError | None = None) -> None:
        """The link is gone: end every stream's consumers with ``error``."""
        self._closed = error or DeviceOfflineError(f"device {self.device_id} went offline")
        for watch in list(self._by_stream.values()):
            self._forget(watch)
            for queue in watch.consumers:
                queue.close(self._closed)
