"""The fleet router: the one interface a device request goes through on the server.

HTTP routes, bulk actions and anything else that needs a device call a :class:`DeviceRouter`;
they never reach for an agent link themselves. :class:`InProcessRouter` serves the links this
process holds (the default, one replica).
:class:`~remotehands.server.cluster.router.NatsRouter` (several replicas: NATS request/reply to
the replica that holds the link, NATS subjects for the frames and chunks of streams) implements
the same Protocol.

Three operations, as the link has them: :meth:`~DeviceRouter.request` (one action, one
answer), :meth:`~DeviceRouter.watch` (the frames of a screen while it changes) and the chunked
transfers :meth:`~DeviceRouter.upload` and :meth:`~DeviceRouter.download`; and one for bulk
actions, :meth:`~DeviceRouter.request_many` (one action on many devices, each device's answer as
soon as it comes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from remotehands.errors import DeviceOfflineError, RemoteHandsError
from remotehands.protocol.streams import Frame

if TYPE_CHECKING:
    from remotehands.server.link.hub import AgentLink, LinkHub

__all__ = ["DeviceRouter", "InProcessRouter", "Incoming", "Reply", "run_many"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """One device's answer in :meth:`DeviceRouter.request_many`: ``result``, or ``error`` when
    the action failed (or never reached the device), and how long it took there."""

    device_id: str
    result: Any = None
    error: RemoteHandsError | None = None
    duration_ms: float = 0.0


class Incoming(Protocol):
    """A download under way: its size, and its bytes in order with ``async for``."""

    @property
    def size(self) -> int:
        """How many bytes the download holds."""
        ...

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The bytes, chunk by chunk (each at most a few MiB)."""
        ...


class DeviceRouter(Protocol):
    """Carries actions, screen streams and transfers between the server and a device's agent."""

    async def request(
        self, device_id: str, action: str, params: dict[str, Any], timeout_s: float
    ) -> Any:
        """Run ``action`` with ``params`` on the device and return its result.

        Raises :class:`~remotehands.errors.DeviceOfflineError` at once when no agent link holds
        the device, :class:`~remotehands.errors.DeviceTimeoutError` when no reply came within
        ``timeout_s``, and the agent's own error (rebuilt with
        :func:`~remotehands.errors.error_from_wire`) when the action failed there.
        """
        ...

    def call(
        self,
        device_id: str,
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        done: Callable[[Any, RemoteHandsError | None], None],
    ) -> bool:
        """Start :meth:`request` without awaiting it, when that can be done at once: then
        ``done(result, None)`` or ``done(None, error)`` is called once, later, with what
        :meth:`request` would have returned or raised, and True is returned. False (nothing
        started, ``done`` never called): await :meth:`request` instead. For callers that
        answer from a callback (a WebSocket relay) and want no task woken by the reply."""
        ...

    def request_many(
        self,
        device_ids: Sequence[str],
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        *,
        concurrency: int,
    ) -> AsyncGenerator[Reply, None]:
        """Run ``action`` with ``params`` on every device of ``device_ids`` (no more than
        ``concurrency`` at a time wherever their links are held) and yield each device's
        :class:`Reply` as soon as it is in, in no particular order: exactly one per device.

        Never raises for one device: its :class:`Reply` carries the error that
        :meth:`request` would have raised (``device_offline``, ``timeout``, the agent's own),
        and a device whose holder stopped answering gets a ``timeout`` reply. Closing the
        iterator early (``aclose``) stops what has not started.
        """
        ...

    def is_online(self, device_id: str) -> bool:
        """Whether an agent link holds the device right now."""
        ...

    def watch(
        self,
        device_id: str,
        screen_id: int = 0,
        *,
        rate: float = 30.0,
        quality: int = 75,
        codec: str = "jpeg",
    ) -> AbstractAsyncContextManager[AsyncIterator[Frame]]:
        """The frames of a screen for the ``async with`` block, as an async iterator.

        A frame comes when the screen changed, at most ``rate`` a second, as ``codec`` of
        ``quality``: ``jpeg`` (whole frames), ``jpeg-rect`` (the changed rectangle after a
        whole first frame) or ``h264``; the first frame a consumer gets is a key frame, and so
        is the next one after a frame it dropped (delta frames it could not decode are
        skipped). The iterator may also implement
        :class:`~remotehands.protocol.streams.KeyframeRequests`. Consumers of one device asking
        the same settings (codec included) share one stream from the agent; each reads through
        its own bounded drop-oldest queue, so one that reads slowly drops frames (a gap in
        :attr:`~remotehands.protocol.streams.Frame.seq`) and never slows the others. The
        iteration ends with :class:`~remotehands.errors.DeviceOfflineError` when the link
        drops, or with the agent's error when it cannot stream the screen. Entering raises
        :class:`~remotehands.errors.DeviceOfflineError` when the device is not linked.
        """
        ...

    async def upload(
        self,
        device_id: str,
        target: str,
        chunks: AsyncIterable[bytes],
        size: int,
        *,
        name: str = "",
    ) -> Any:
        """Stream ``size`` bytes from ``chunks`` to the agent's transfer ``target`` as ``name``
        and return the target's answer.

        Chunks of any size are cut to the link's; no more than a window of bytes is in flight,
        so neither end holds the payload. Cancelling the caller cancels the transfer on the
        agent; a failure there raises its error here.
        """
        ...

    def download(
        self, device_id: str, target: str, name: str
    ) -> AbstractAsyncContextManager[Incoming]:
        """``name`` from the agent's transfer ``target`` for the ``async with`` block: iterate
        the :class:`Incoming` for its bytes. Leaving the block early cancels the transfer."""
        ...


class InProcessRouter:
    """The :class:`DeviceRouter` over the agent links held by this process's :class:`LinkHub`."""

    def __init__(self, hub: LinkHub) -> None:
        self._hub = hub

    def _link(self, device_id: str) -> AgentLink:
        link = self._hub.get(device_id)
        if link is None:
            raise DeviceOfflineError(
                f"device {device_id} is offline: its agent is not connected to the server"
            )
        return link

    async def request(
        self, device_id: str, action: str, params: dict[str, Any], timeout_s: float
    ) -> Any:
        """See :meth:`DeviceRouter.request`."""
        return await self._link(device_id).request(action, params, timeout_s)

    def call(
        self,
        device_id: str,
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        done: Callable[[Any, RemoteHandsError | None], None],
    ) -> bool:
        """See :meth:`DeviceRouter.call`."""
        link = self._hub.get(device_id)
        return link is not None and link.call(action, params, timeout_s, done)

    def request_many(
        self,
        device_ids: Sequence[str],
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        *,
        concurrency: int,
    ) -> AsyncGenerator[Reply, None]:
        """See :meth:`DeviceRouter.request_many`."""

        async def one(device_id: str) -> Any:
            return await self.request(device_id, action, params, timeout_s)

        return run_many(device_ids, one, concurrency)

    def is_online(self, device_id: str) -> bool:
        """See :meth:`DeviceRouter.is_online`."""
        return self._hub.get(device_id) is not None

    def watch(
        self,
        device_id: str,
        screen_id: int = 0,
        *,
        rate: float = 30.0,
        quality: int = 75,
        codec: str = "jpeg",
    ) -> AbstractAsyncContextManager[AsyncIterator[Frame]]:
        """See :meth:`DeviceRouter.watch`."""
        return self._link(device_id).watches.watch(
            screen_id, rate=rate, quality=quality, codec=codec
        )

    async def upload(
        self,
        device_id: str,
        target: str,
        chunks: AsyncIterable[bytes],
        size: int,
        *,
        name: str = "",
    ) -> Any:
        """See :meth:`DeviceRouter.upload`."""
        return await self._link(device_id).transfers.upload(target, name, chunks, size)

    def download(
        self, device_id: str, target: str, name: str
    ) -> AbstractAsyncContextManager[Incoming]:
        """See :meth:`DeviceRouter.download`."""
        return self._link(device_id).transfers.download(target, name)


async def run_many(
    device_ids: Sequence[str],
    call: Callable[[str], Awaitable[Any]],
    concurrency: int,
) -> AsyncGenerator[Reply, None]:
    """``call`` for every device, ``concurrency`` at a time, each :class:`Reply` yielded as
    soon as it is in (the body of :meth:`DeviceRouter.request_many` for local links).

    ``concurrency`` workers take the devices in turn (rather than one task per device waiting
    on a semaphore: at 10,000 devices that is 10,000 tasks and their frames for nothing).
    Closing the iterator cancels the calls under way and starts no other.
    """
    pending = iter(device_ids)
    replies: asyncio.Queue[Reply] = asyncio.Queue()

    async def work() -> None:
        for device_id in pending:
            start = time.perf_counter()
            result: Any = None
            error: RemoteHandsError | None = None
            try:
                result = await call(device_id)
            except RemoteHandsError as err:
                error = err
            except Exception as err:  # a bug must cost one device's result, not the others'
                logger.exception("a call on device %s failed", device_id)
                error = RemoteHandsError(f"server error: {err!r}")
            elapsed_ms = round((time.perf_counter() - start) * 1000, 3)
            replies.put_nowait(Reply(device_id, result, error, elapsed_ms))

    loop = asyncio.get_running_loop()
    workers = [loop.create_task(work()) for _ in range(max(1, min(concurrency, len(device_ids))))]
    try:
        for _ in range(len(device_ids)):
            yield await replies.get()
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
