"""Screen streams on the server's side of one agent link.

:class:`LinkWatches` shares one link stream among every server-side consumer of the same
screen and settings: the first consumer sends ``watch`` to the agent, each consumer reads
frames through its own bounded :class:`~remotehands.protocol.streams.DropOldest` queue (a slow
one drops frames and never holds up the others or the link's reader), and the last one to
leave sends ``unwatch``. When the agent ends a stream or the link drops, every consumer's
iteration ends with the error.

The format (``jpeg``, ``jpeg-rect``, ``h264``) is part of the sharing key. A consumer that joins
a stream of a delta format already under way asks the agent for a key frame (``keyframe``) and
skips frames until it comes; so does one that dropped a frame (a
:class:`~remotehands.protocol.streams.KeyGate` per consumer), and one whose own decoder failed
(:meth:`WatchFeed.request_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from remotehands.errors import DeviceOfflineError, RemoteHandsError, error_from_wire
from remotehands.protocol.link import FrameMessage, Keyframe, StreamEnd, Unwatch, Watch, encode
from remotehands.protocol.streams import DropOldest, Frame, KeyGate

__all__ = ["DEFAULT_DEPTH", "LinkWatches", "ScreenWatch", "WatchFeed", "WatchKey"]

logger = logging.getLogger(__name__)

DEFAULT_DEPTH = 2
"""Frames a consumer may fall behind before its oldest are dropped."""

WatchKey = tuple[int, float, int, str]
"""``(screen, rate, quality, format)``: consumers asking the same share one link stream."""
KEYFRAME_SEND_TIMEOUT_S = 5.0
"""The longest a key frame request may wait for the link."""

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


class WatchFeed:
    """One consumer's frames of a watch (``async for``): the frames it can decode, see the
    module docstring. ``ask`` asks the frames' source for a key frame: the agent over its link,
    or the replica holding the device."""

    def __init__(
        self,
        queue: DropOldest[Frame],
        ask: Callable[[], Awaitable[None]],
        gate: KeyGate,
        *,
        ask_timeout_s: float = KEYFRAME_SEND_TIMEOUT_S,
    ) -> None:
        self.queue = queue
        self._ask_source = ask
        self._ask_timeout_s = ask_timeout_s
        self.gate = gate

    @property
    def dropped(self) -> int:
        """Frames this consumer lost because it read too slowly."""
        return self.queue.dropped

    def __len__(self) -> int:
        """Frames waiting to be read."""
        return len(self.queue)

    def __aiter__(self) -> WatchFeed:
        return self

    async def __anext__(self) -> Frame:
        while True:
            frame = await self.queue.get()
            admit, ask = self.gate.admit(frame, time.monotonic())
            if ask:
                await self._ask()
            if admit:
                return frame

    async def request_key(self) -> None:
        """Skip to the next key frame, and ask the source for one now."""
        self.gate.reset()
        await self._ask()

    async def _ask(self) -> None:
        # A lost request is asked again by the gate; it must not end the consumer's stream.
        with contextlib.suppress(RemoteHandsError, TimeoutError):
            async with asyncio.timeout(self._ask_timeout_s):
                await self._ask_source()


class LinkWatches:
    """The screen streams of one agent link; :meth:`handle` takes their messages."""

    def __init__(self, device_id: str, send: Send) -> None:
        self.device_id = device_id
        self._send = send
        self._ids = itertools.count(1)
        self._by_key: dict[WatchKey, ScreenWatch] = {}
        self._by_stream: dict[int, ScreenWatch] = {}
        self._closed: RemoteHandsError | None = None

    def _key_asker(self, stream: int) -> Callable[[], Awaitable[None]]:
        """What a feed of ``stream`` calls to ask the agent for a key frame."""

        async def ask() -> None:
            await self._send(encode(Keyframe(stream=stream)))

        return ask

    @property
    def streams(self) -> list[ScreenWatch]:
        """The link streams open now."""
        return list(self._by_stream.values())

    @contextlib.asynccontextmanager
    async def watch(
        self, screen_id: int = 0, *, rate: float = 30.0, quality: int = 75,
        codec: str = "jpeg", depth: int | None = None,
    ) -> AsyncIterator[WatchFeed]:  # fmt: skip
        """Frames of the screen for the block; see
        :meth:`remotehands.server.router.DeviceRouter.watch`."""
        if self._closed is not None:
            raise self._closed
        settings = Watch.model_validate(
            {"stream": 0, "screen": screen_id, "rate": rate, "quality": quality, "format": codec}
        )  # checks the settings
        key: WatchKey = (screen_id, float(rate), quality, settings.format)
        # A delta format's consumer loses more than one frame to a drop: a little more room.
        queue: DropOldest[Frame] = DropOldest(depth or (DEFAULT_DEPTH if codec == "jpeg" else 4))
        watch = self._by_key.get(key)
        if watch is None:
            watch = ScreenWatch(next(self._ids), key)
            self._by_key[key] = watch
            self._by_stream[watch.stream] = watch
            watch.consumers.append(queue)
            feed = WatchFeed(queue, self._key_asker(watch.stream), KeyGate())
            try:
                await self._send(encode(settings.model_copy(update={"stream": watch.stream})))
            except BaseException:
                self._forget(watch)
                raise
        else:
            watch.consumers.append(queue)
            feed = WatchFeed(queue, self._key_asker(watch.stream),
                             KeyGate(asked_at=time.monotonic()))  # fmt: skip
            if settings.format != "jpeg":
                await feed._ask()  # joined a delta stream midway: it needs a key frame
        try:
            yield feed
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
            item = Frame(frame.seq, frame.at, frame.width, frame.height, frame.format, frame.data,
                         frame.x, frame.y, frame.key)  # fmt: skip
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
