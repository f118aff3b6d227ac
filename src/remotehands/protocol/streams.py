"""What both ends of a stream share: the frame record, the drop-oldest queue every consumer of
frames reads from, and the credit windows that pace chunked transfers.

The agent's frame source (:mod:`remotehands.agent.framesource`) and the server's watch streams
(:mod:`remotehands.server.link.streams`) hand frames to each consumer through a
:class:`DropOldest` queue: a consumer that falls behind loses its oldest frames and never makes
the producer or the other consumers wait.

A chunked transfer is paced by its receiver: it grants bytes (:class:`ReceiveWindow` tracks what
it granted and refuses a chunk past it), and the sender never sends more than it was granted
(:class:`SendWindow` waits for credit). So at most one window of bytes is ever in flight.
"""

from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from remotehands.errors import RemoteHandsError, ValidationError

__all__ = [
    "CHUNK_MAX",
    "DEFAULT_CHUNK",
    "DEFAULT_WINDOW",
    "DropOldest",
    "Frame",
    "KeyGate",
    "KeyframeRequests",
    "ReceiveWindow",
    "SendWindow",
]

DEFAULT_CHUNK = 1 << 20
"""The size of a transfer chunk (1 MiB)."""
CHUNK_MAX = 4 << 20
"""No chunk may be larger (4 MiB): the link's messages stay small."""
DEFAULT_WINDOW = 8 << 20
"""The bytes a receiver lets be in flight (8 MiB): enough to fill a loopback or LAN pipe, small
enough that neither end holds much."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame of a screen stream.

    ``seq`` counts the frames the source produced (a consumer that sees a gap dropped frames);
    ``captured_at`` is the capture's wall-clock time in seconds since the epoch.
    """

    seq: int
    captured_at: float
    width: int
    height: int
    format: str
    data: bytes
    x: int = 0
    """Where :attr:`data`'s image goes on the screen: a ``jpeg-rect`` frame after the first
    carries only the changed rectangle (its own size is in the JPEG); ``width`` and ``height``
    are always the whole screen's."""
    y: int = 0
    key: bool = True
    """Whether the frame stands alone: every ``jpeg`` frame, a ``jpeg-rect`` frame of the whole
    screen, an H.264 IDR frame. Other frames are deltas: a consumer that missed the frame
    before one must wait for the next key frame (see :class:`KeyGate`)."""


@runtime_checkable
class KeyframeRequests(Protocol):
    """A frame feed that can be asked for a key frame (a viewer whose decoder failed). A
    watch's iterator may implement it beside ``async for``; one that does not gets a new
    watch from its viewer instead."""

    async def request_key(self) -> None:
        """Skip to a key frame, and ask for one soon, even if the screen does not change."""
        ...


class KeyGate:
    """Which frames of one stream a consumer can decode, frame by frame.

    A delta frame (``key`` false) decodes only on top of the frame before it: a consumer that
    missed one (a gap in :attr:`Frame.seq`) or joined without a key frame skips frames until
    the next key frame, and asks for one (:meth:`admit` answers whether to ask; at most once
    each ``ask_every_s``, in case a request or its answer is lost). Key frames always pass, so
    a ``jpeg`` stream passes whole.
    """

    def __init__(self, ask_every_s: float = 1.0, *, asked_at: float | None = None) -> None:
        """``asked_at``: when a key frame was asked for already (a consumer that asks as it
        joins), so that the gate does not ask again before ``ask_every_s``."""
        self.ask_every_s = ask_every_s
        self._last_seq: int | None = None
        self._waiting = True
        self._asked_at = -math.inf if asked_at is None else asked_at
        self.skipped = 0
        """Frames skipped while waiting for a key frame."""

    def admit(self, frame: Frame, now: float) -> tuple[bool, bool]:
        """``(pass the frame, ask for a key frame)`` for ``frame`` arriving at ``now``
        (monotonic seconds)."""
        last, self._last_seq = self._last_seq, frame.seq
        if frame.key:
            self._waiting = False
            return True, False
        if not self._waiting and last is not None and frame.seq == last + 1:
            return True, False
        was_waiting, self._waiting = self._waiting, True
        self.skipped += 1
        # A fresh gap asks at once; a gate that keeps waiting asks again now and then.
        if not was_waiting or now - self._asked_at >= self.ask_every_s:
            self._asked_at = now
            return False, True
        return False, False

    def reset(self) -> None:
        """Wait for a key frame again (the consumer's decoder lost its state)."""
        self._waiting = True


T = TypeVar("T")


class _Closed:
    """The end marker a closed :class:`DropOldest` queue yields."""


_CLOSED = _Closed()


class DropOldest(Generic[T]):
    """A bounded queue that drops its oldest item to make room: :meth:`put` never waits.

    :meth:`close` ends it: the consumer gets what is left, then ``StopAsyncIteration`` (or the
    error given to :meth:`close`). Iterate it with ``async for``.
    """

    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("a DropOldest queue holds at least one item")
        self._items: collections.deque[T] = collections.deque(maxlen=depth)
        self._ready = asyncio.Event()
        self._closed = False
        self._error: RemoteHandsError | None = None
        self.dropped = 0
        """How many items were pushed out unread."""
        self.delivered = 0
        """How many items the consumer took."""

    def put(self, item: T) -> None:
        """Add ``item``, dropping the oldest when full; ignored once closed."""
        if self._closed:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    def close(self, error: RemoteHandsError | None = None) -> None:
        """End the queue; ``error`` is raised to the consumer once the items left are read."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._ready.set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        """The oldest item kept; raises ``StopAsyncIteration`` (or the close error) at the end."""
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        return self._items.popleft()

    def __aiter__(self) -> DropOldest[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()


class SendWindow:
    """The sender's side of a transfer's flow control: bytes it may still send.

    :meth:`grant` adds the receiver's credit; :meth:`spend` waits until ``n`` bytes are granted
    and takes them, so the sender never exceeds the window. :meth:`fail` wakes the waiter with an
    error (a cancel from the peer, a dropped link).
    """

    def __init__(self) -> None:
        self.credit = 0
        self.granted = 0
        """Every byte granted so far."""
        self.sent = 0
        """Every byte spent so far; never more than :attr:`granted`."""
        self._changed = asyncio.Event()
        self._error: RemoteHandsError | None = None

    def grant(self, n: int) -> None:
        """The receiver allowed ``n`` more bytes."""
        if n <= 0:
            raise ValidationError(f"a transfer credit must be positive, got {n}")
        self.credit += n
        self.granted += n
        self._changed.set()

    def fail(self, error: RemoteHandsError) -> None:
        """End the transfer with ``error``: a waiting :meth:`spend` raises it."""
        if self._error is None:
            self._error = error
        self._changed.set()

    @property
    def error(self) -> RemoteHandsError | None:
        """What ended the transfer, if anything did."""
        return self._error

    async def spend(self, n: int, timeout_s: float) -> None:
        """Wait for ``n`` bytes of credit (at most ``timeout_s`` at a stretch) and take them."""
        while True:
            if self._error is not None:
                raise self._error
            if self.credit >= n:
                self.credit -= n
                self.sent += n
                return
            self._changed.clear()
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()


class ReceiveWindow:
    """The receiver's side of a transfer's flow control.

    It grants ``window`` bytes at the start (:meth:`initial`), checks that every chunk comes in
    order and fits the credit still open (:meth:`receive`, which raises
    :class:`ValidationError` for a chunk out of order or past it), and grants again what the
    receiver consumed once a quarter window is free (:meth:`consumed`), so credits are few and
    the pipe stays full. :attr:`peak` is the most bytes ever received and not yet consumed:
    never more than ``window``.
    """

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("a transfer window is at least one byte")
        self.window = window
        self.open = 0
        """Bytes granted and not yet received."""
        self.held = 0
        """Bytes received and not yet consumed."""
        self.peak = 0
        self.received = 0
        """Bytes received in all: the offset the next chunk must start at."""
        self._to_grant = 0

    def initial(self) -> int:
        """The first grant: the whole window."""
        self.open = self.window
        return self.window

    def receive(self, n: int, offset: int) -> None:
        """Account for a chunk of ``n`` bytes at ``offset``; refuses one out of order or one
        the sender had no credit for."""
        if offset != self.received:
            raise ValidationError(f"a transfer chunk at {offset}, expected one at {self.received}")
        if n > self.open:
            raise ValidationError(
                f"a transfer chunk of {n} bytes exceeds the {self.open} bytes of credit granted"
            )
        self.open -= n
        self.held += n
        self.received += n
        self.peak = max(self.peak, self.held)

    def consumed(self, n: int) -> int:
        """The receiver is done with ``n`` bytes: the credit to grant now (0 to wait)."""
        self.held -= n
        self._to_grant += n
        if self._to_grant < max(1, self.window // 4):
            return 0
        grant, self._to_grant = self._to_grant, 0
        self.open += grant
        return grant
