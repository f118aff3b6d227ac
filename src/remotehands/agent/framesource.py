"""The agent's frame stream: one :class:`FrameSource` per screen, shared by every consumer.

A source captures only while someone watches. Each tick it grabs the screen through the
driver's :class:`~remotehands.drivers.base.Screen`, compares the frame with the last one it kept
(64-bit words, row bands first, in a worker thread: well under a millisecond at 1080p), and
encodes only a frame that changed, once per distinct encoder among its consumers. Each consumer
reads through its own bounded :class:`~remotehands.protocol.streams.DropOldest` queue, so a slow
one drops frames and never makes the source or the others wait::

    async with source.subscribe(rate=10) as frames:
        async for frame in frames:
            ...

The source ticks at the highest rate its consumers ask for, capped by its own ``rate`` (30/s by
default), plus :data:`TICK_HEADROOM` (5 %), on a fixed grid of deadlines (:class:`TickSchedule`:
a late tick does not push the next ones back, a few lost ticks are made up, and a tick that
finds a moving screen unchanged looks again half a period later), so that the rate a consumer
asks holds on a busy machine and on a screen that repaints on its own clock; each consumer is
paced to its own rate. A new consumer gets the current frame at
once. Capture stops ``linger_s`` (0.5 s) after the last consumer left, so a viewer that
reconnects at once does not restart it.

Input shows at once: :meth:`FrameSource.kick` (the device's dispatcher calls
:meth:`FrameSources.kick` after every action that may redraw the screen) makes a watching source
capture :data:`KICK_DELAYS_S` after the input (2 ms, time for the application to draw), and again
at 10 and 25 ms while those captures found the screen unchanged, instead of waiting up to a
period for its next tick. Kicks never make a capture while nobody watches, nor two captures
closer than ``1 / MAX_RATE``, nor one while a consumer has not taken the last frame yet (it
comes once it has; a consumer whose queue is full, behind anyway, holds nobody back), so that
input as fast as it comes cannot raise the rate beyond that bound nor fill a consumer's queue
with frames it would read late. The next tick comes a period after a kicked capture that
showed a change; kicked captures that found none leave the ticks where they were (a slow
application is then caught by the tick it would have been anyway).

Encoding is pluggable (:class:`FrameEncoder`): whole JPEG frames (:class:`JpegEncoder`), the
changed rectangle as JPEG after a whole first frame (:class:`JpegRectEncoder`), H.264
(:class:`remotehands.agent.h264.H264Encoder`). Consumers whose encoders have equal ``key`` share
one encoding of each frame. A frame of a delta encoding (``key`` false on the
:class:`~remotehands.protocol.streams.Frame`) needs the one before it: a consumer that missed
one asks for a key frame with :meth:`FrameStream.request_key`, which makes the next capture
whole (and an H.264 encoder start an IDR) even if nothing changed. An encoder that lowers its
picture while the screen moves (H.264 at half size) gets the kept frame again through its
``settle`` once the screen has been still long enough, so that the last picture is sharp.

:class:`FrameSources` keeps one source per screen of a device; every consumer (the fleet link,
a face's live view) takes its source from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from remotehands.agent import imaging
from remotehands.drivers.base import FrameArray, Screen
from remotehands.errors import DeviceError, DeviceTimeoutError, RemoteHandsError, ValidationError
from remotehands.protocol.models import Bounds
from remotehands.protocol.streams import DropOldest, Frame

__all__ = [
    "DEFAULT_RATE",
    "KICK_DELAYS_S",
    "MAX_RATE",
    "TICK_HEADROOM",
    "Encoded",
    "FrameEncoder",
    "FrameSource",
    "FrameSources",
    "FrameStream",
    "JpegEncoder",
    "JpegRectEncoder",
    "TickSchedule",
    "changed_box",
    "encoder_for",
]

log = logging.getLogger(__name__)

DEFAULT_RATE = 30.0
"""Frames a second a source captures at most, unless configured otherwise."""
MAX_RATE = 120.0
"""The most captures a second a source makes, its ticks and kicks together."""
KICK_DELAYS_S = (0.002, 0.010, 0.025)
"""When a source captures after a kick (seconds after it), until a capture finds a change."""
TICK_HEADROOM = 1.05
"""A source ticks this much faster than its fastest consumer asks: a tick now and then lost to a
busy machine (or a grab that found the screen between two repaints) must not bring a consumer
that asks 30 frames a second below 30. A consumer still takes frames at its own pace."""
CATCH_UP = 3
"""Ticks a source makes up for after a stall, at :data:`CATCH_UP_GAP` periods apart (never back
to back: a consumer's drop-oldest queue holds two by default, a burst would drop frames); a
longer stall starts the grid again."""
CATCH_UP_GAP = 0.8
"""The shortest gap, in periods, between two ticks that make up for lost ones: longer than the
0.75 period a consumer waits between two frames, so that it takes each."""
RECHECK_AT = 0.5
"""A tick that found a moving screen unchanged (it was grabbed between two repaints) looks again
this far into the period, off the grid, instead of leaving the period without a frame."""
GRAB_TIMEOUT_S = 5.0
"""The longest one screen grab may take."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """An encoded frame that is not simply the whole screen: a rectangle at ``x``, ``y``, or a
    delta frame (``key`` false). Empty ``data``: nothing to send for this frame."""

    data: bytes
    x: int = 0
    y: int = 0
    key: bool = True


class FrameEncoder(Protocol):
    """Turns a changed BGRX frame into bytes of one :attr:`format`.

    :meth:`encode` runs in a worker thread; ``changed`` is the rectangle that differs from the
    previous frame (the whole frame for the first one, and for a capture forced by a key frame
    request). It answers bytes (a whole key frame) or an :class:`Encoded`. Encoders with equal
    :attr:`key` produce the same bytes, so the source encodes once for all their consumers; a
    stateful encoder (H.264) gives each consumer a key of its own, and may have a
    ``request_key()`` method, which :meth:`FrameStream.request_key` calls. An encoder that
    lowers its quality while the screen moves (H.264 at half size) has a ``settle_due``
    attribute (``time.monotonic()`` seconds, or ``None``) and a ``settle(frame)`` method: once
    ``settle_due`` has passed, a capture that finds the screen unchanged calls ``settle`` with
    the kept frame, and what it answers (unless ``None``) goes to that encoder's consumers.
    """

    @property
    def format(self) -> str:
        """The encoding's name, e.g. ``jpeg``."""
        ...

    @property
    def key(self) -> Hashable:
        """Equal for encoders whose output is the same."""
        ...

    def encode(self, frame: FrameArray, changed: Bounds) -> bytes | Encoded:
        """The encoded frame."""
        ...


@dataclass(frozen=True, slots=True)
class JpegEncoder:
    """Whole frames as JPEG (simplejpeg straight from BGRX)."""

    quality: int = 75
    subsampling: imaging.Subsampling = "420"

    @property
    def format(self) -> str:
        return "jpeg"

    @property
    def key(self) -> Hashable:
        return ("jpeg", self.quality, self.subsampling)

    def encode(self, frame: FrameArray, changed: Bounds) -> bytes:
        return imaging.encode(frame, "jpeg", self.quality, subsampling=self.subsampling)


@dataclass(frozen=True, slots=True)
class JpegRectEncoder:
    """The changed rectangle as JPEG, at its ``x``, ``y``; the whole frame (a key frame) when
    all of it changed: the first frame, and a capture forced by a key frame request. A
    keystroke in a terminal is under a KiB this way instead of 200 (PERFORMANCE.md)."""

    quality: int = 75
    subsampling: imaging.Subsampling = "420"

    @property
    def format(self) -> str:
        return "jpeg-rect"

    @property
    def key(self) -> Hashable:
        return ("jpeg-rect", self.quality, self.subsampling)

    def encode(self, frame: FrameArray, changed: Bounds) -> Encoded:
        height, width = frame.shape[:2]
        if changed.x == 0 and changed.y == 0 and (changed.width, changed.height) == (width, height):
            return Encoded(imaging.encode(frame, "jpeg", self.quality,
                                          subsampling=self.subsampling))  # fmt: skip
        region = frame[
            changed.y : changed.y + changed.height, changed.x : changed.x + changed.width
        ]
        data = imaging.encode(region, "jpeg", self.quality, subsampling=self.subsampling)
        return Encoded(data, changed.x, changed.y, key=False)


def encoder_for(fmt: str, quality: int = 75, *, rate: float = DEFAULT_RATE) -> FrameEncoder:
    """A new encoder of ``fmt`` (``jpeg``, ``jpeg-rect`` or ``h264``) at ``quality``."""
    if fmt == "jpeg":
        return JpegEncoder(quality)
    if fmt == "jpeg-rect":
        return JpegRectEncoder(quality)
    if fmt == "h264":
        # Imported here: PyAV is loaded only by an agent that is asked for H.264.
        from remotehands.agent.h264 import H264Encoder

        return H264Encoder(quality, rate=rate)
    raise ValidationError(f"unknown frame format {fmt!r}: use jpeg, jpeg-rect or h264")


def changed_box(previous: FrameArray | None, current: FrameArray) -> Bounds | None:
    """The rectangle where ``current`` differs from ``previous`` (all of it when there is no
    previous frame of that size), or ``None`` when they are equal.

    Compares 64-bit words (two pixels each) when the width is even, so the box may reach one
    pixel further than the change.
    """
    height, width = current.shape[:2]
    if previous is None or previous.shape != current.shape:
        return Bounds(x=0, y=0, width=width, height=height)
    # ``previous`` is always our own contiguous copy; a driver's frame may be a strided view.
    current = np.ascontiguousarray(current)
    words = np.uint64 if width % 2 == 0 else np.uint32
    px = 2 if words is np.uint64 else 1
    a: npt.NDArray[Any] = previous.reshape(height, width * 4).view(words)
    b: npt.NDArray[Any] = current.reshape(height, width * 4).view(words)
    # One comparison of the whole frame (about 1.7 ms at 1080p); the rows and then the
    # columns of the changed span come from the same array.
    differs = a != b
    rows = np.flatnonzero(differs.any(axis=1))
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    columns = np.flatnonzero(differs[top:bottom].any(axis=0))
    left = int(columns[0]) * px
    right = min(width, (int(columns[-1]) + 1) * px)
    return Bounds(x=left, y=top, width=right - left, height=bottom - top)


@dataclass(slots=True)
class TickSchedule:
    """When a source's ticks are due: deadlines on a fixed grid (``origin + n * period``, so
    neither late ticks nor float sums make the rate drift), lost ticks made up at
    :data:`CATCH_UP_GAP` periods apart up to :data:`CATCH_UP` of them, and one look again
    (:data:`RECHECK_AT`) in a period whose tick found a moving screen unchanged. Pure: the
    source passes the times in, so the schedule is tested without a clock."""

    period: float
    origin: float
    index: int = 1
    """The grid index of the next tick (``origin`` was tick 0)."""
    last: float = -math.inf
    """When the last tick ran (a look again does not count)."""
    moving: bool = False
    """Whether the last tick found a change."""
    recheck: float | None = None
    """When a look again is due, if one is."""

    @classmethod
    def start(cls, rate: float, now: float) -> TickSchedule:
        """A grid of ``rate`` ticks a second (with :data:`TICK_HEADROOM`) whose first tick is
        due ``now``."""
        return cls(1.0 / (rate * TICK_HEADROOM), now, index=0)

    @property
    def due(self) -> float:
        """When the next tick (or look again) may run."""
        grid = self.origin + self.index * self.period
        if self.recheck is not None:
            return min(self.recheck, grid)
        # Behind the grid (a stall): make up lost ticks, but not back to back.
        return max(grid, self.last + CATCH_UP_GAP * self.period)

    def ran(self, started: float, changed: bool, now: float) -> None:
        """The tick (or look again) due at :attr:`due`, started at ``started``, found the
        screen ``changed`` or not; ``now`` is when it ended."""
        grid = self.origin + self.index * self.period
        was_recheck = self.recheck is not None and self.recheck <= grid
        self.recheck = None
        if was_recheck:
            self.moving = changed
            return
        self.last = started
        self.index += 1
        if not changed and self.moving:
            self.recheck = started + RECHECK_AT * self.period
        self.moving = changed
        # More ticks lost than are made up for: the grid starts again from this one.
        if self.origin + (self.index + CATCH_UP) * self.period < now:
            self.restart(started + self.period)

    def restart(self, first: float) -> None:
        """A new grid whose first tick is due at ``first`` (a kicked capture showed a change:
        a tick sooner would find nothing new; or the rate changed)."""
        self.origin, self.index, self.recheck, self.last = first, 0, None, -math.inf


@dataclass(eq=False)
class FrameStream:
    """One consumer of a :class:`FrameSource`: iterate it for frames (``async for``)."""

    encoder: FrameEncoder
    rate: float
    queue: DropOldest[Frame]
    depth: int = 2
    """How many frames :attr:`queue` holds."""
    taken: Callable[[], None] | None = None
    """Called each time this consumer takes a frame."""
    refresh: Callable[[], object] | None = None
    """Makes the source's next capture whole (:meth:`FrameSource.refresh`)."""
    _last_yield: float = field(default=0.0)

    def request_key(self) -> None:
        """A key frame for this consumer soon, even if the screen does not change: its
        encoder starts afresh (H.264: an IDR frame) and the next capture is whole."""
        request = getattr(self.encoder, "request_key", None)
        if callable(request):
            request()
        if self.refresh is not None:
            self.refresh()

    def __aiter__(self) -> FrameStream:
        return self

    async def __anext__(self) -> Frame:
        # Pace to this consumer's rate; the wait comes before the take, so that the frame
        # handed out is the newest one kept. A quarter period of slack: a consumer at the
        # source's own rate must not miss a frame to the jitter of the two clocks.
        gap = 0.75 / self.rate - (time.monotonic() - self._last_yield)
        if gap > 0:
            await asyncio.sleep(gap)
        frame = await self.queue.get()
        self._last_yield = time.monotonic()
        if self.taken is not None:
            self.taken()
        return frame

    @property
    def dropped(self) -> int:
        """Frames this consumer lost because it read too slowly."""
        return self.queue.dropped


class FrameSource:
    """Frames of one screen for any number of consumers; see the module docstring."""

    def __init__(
        self,
        screen: Screen,
        screen_id: int = 0,
        *,
        rate: float = DEFAULT_RATE,
        linger_s: float = 0.5,
    ) -> None:
        if not 0 < rate <= MAX_RATE:
            raise ValidationError(f"a frame rate must be in (0, {MAX_RATE:g}], got {rate}")
        self.screen = screen
        self.screen_id = screen_id
        self.rate = rate
        self.linger_s = linger_s
        self._consumers: list[FrameStream] = []
        self._latest: dict[Hashable, Frame] = {}
        self._previous: FrameArray | None = None
        self._spare: FrameArray | None = None
        self._encoding: asyncio.Task[None] | None = None
        self._seq = 0
        self._force = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._kicked_at: float | None = None
        """When the input that the pending kick answers happened (``None``: no kick pending)."""
        self._kick_step = 0
        self._last_capture = -math.inf
        self.captures = 0
        """Screen grabs so far."""
        self.kicked_captures = 0
        """Screen grabs made for a kick rather than on a tick."""
        self.frames = 0
        """Changed frames so far (each encoded once per distinct encoder)."""
        self.error: RemoteHandsError | None = None
        """What stopped the last capture run, if it failed."""

    @property
    def capturing(self) -> bool:
        """Whether the capture loop runs."""
        return self._task is not None and not self._task.done()

    @property
    def consumers(self) -> int:
        """How many consumers are subscribed."""
        return len(self._consumers)

    @property
    def kick_pending(self) -> bool:
        """Whether a kick still waits for a capture that shows a change."""
        return self._kicked_at is not None

    def refresh(self) -> bool:
        """Capture soon and treat the whole frame as changed, even if it did not (a consumer
        needs a key frame). Answers whether a capture was asked for: never while nobody
        watches."""
        if not self._consumers or not self.capturing:
            return False
        self._force = True
        self._wake.set()
        return True

    def kick(self) -> bool:
        """Input just reached the screen: capture soon (see the module docstring) rather than
        at the next tick. Answers whether a capture was asked for: never while nobody watches.
        Cheap and synchronous: call it from the event loop after each input."""
        if not self._consumers or not self.capturing:
            return False
        # A later kick starts the schedule again: its own input needs a capture after it.
        self._kicked_at = asyncio.get_running_loop().time()
        self._kick_step = 0
        self._wake.set()
        return True

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        *,
        rate: float | None = None,
        encoder: FrameEncoder | None = None,
        depth: int = 2,
    ) -> AsyncIterator[FrameStream]:
        """Frames of this screen for the block, about ``rate`` a second while it changes (the
        source's rate by default; the source ticks :data:`TICK_HEADROOM` above it, so a few
        more may come, never more than 4/3 of it), encoded by ``encoder`` (JPEG q75 by
        default), through a drop-oldest queue of ``depth`` frames. The stream ends with the
        source's error if capture fails."""
        want = min(self.rate, rate or self.rate)
        if want <= 0:
            raise ValidationError(f"a frame rate must be positive, got {rate}")
        stream = FrameStream(encoder or JpegEncoder(), want, DropOldest(depth), depth, self._taken,
                             self.refresh)  # fmt: skip
        latest = self._latest.get(stream.encoder.key)
        if latest is not None and latest.key and self.capturing:
            stream.queue.put(latest)
        elif self.capturing:
            # A new encoder, or a delta stream's consumer: its first frame must be a key frame,
            # and come even if nothing moves.
            self._force = True
        self._consumers.append(stream)
        self._wake.set()
        if not self.capturing:
            self.error = None
            self._task = asyncio.create_task(self._run(), name=f"frames-screen-{self.screen_id}")
        try:
            yield stream
        finally:
            self._consumers.remove(stream)
            stream.queue.close()
            self._wake.set()

    async def aclose(self) -> None:
        """Stop capturing now and end every consumer's stream."""
        for stream in list(self._consumers):
            stream.queue.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _tick_rate(self) -> float:
        return max((c.rate for c in self._consumers), default=self.rate)

    def _taken(self) -> None:
        if self._kicked_at is not None:
            self._wake.set()  # a kick may have waited for this consumer

    def _kick_due(self) -> float:
        """When the pending kick's next capture may come (infinity: no kick pending, or one
        that waits until every consumer took the last frame; one whose queue is full is
        behind and dropping frames anyway, so it holds nobody back)."""
        if self._kicked_at is None or any(0 < len(c.queue) < c.depth for c in self._consumers):
            return math.inf
        return max(
            self._kicked_at + KICK_DELAYS_S[self._kick_step], self._last_capture + 1.0 / MAX_RATE
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        ticks = TickSchedule.start(self._tick_rate(), loop.time())
        try:
            while True:
                now = loop.time()
                if not self._consumers:
                    self._kicked_at = None
                    idle_since = idle_since if idle_since is not None else now
                    left = idle_since + self.linger_s - now
                    if left <= 0:
                        return
                    await self._sleep(left)
                    # a consumer that comes back gets a frame at once
                    ticks = TickSchedule.start(self._tick_rate(), loop.time())
                    continue
                idle_since = None
                rate = self._tick_rate()
                if not math.isclose(ticks.period, 1.0 / (rate * TICK_HEADROOM)):
                    ticks = TickSchedule.start(rate, now)  # a consumer came or went
                kick_due = self._kick_due()
                due = min(ticks.due, kick_due)
                if due > now:
                    # woken early by a kick or a consumer: the due time is worked out again
                    await self._sleep(due - now)
                    continue
                kicked = kick_due <= ticks.due
                started = loop.time()
                changed = await self._capture(fused=kicked)
                self._last_capture = started
                self.kicked_captures += kicked
                # A kick that came during this grab is for input after it: it stays as it is.
                if self._kicked_at is not None and self._kicked_at <= started:
                    if changed:
                        self._kicked_at = None  # this grab (a tick's, perhaps) showed the input
                    elif kicked:
                        self._kick_step += 1
                        if self._kick_step == len(KICK_DELAYS_S):
                            self._kicked_at = None
                if kicked and changed:
                    ticks.restart(started + ticks.period)  # a tick now would find nothing new
                elif not kicked:
                    ticks.ran(started, changed, loop.time())
        except RemoteHandsError as err:
            log.warning("screen %s: capture stopped: %s", self.screen_id, err.details)
            self.error = err
            for stream in list(self._consumers):
                stream.queue.close(err)
        finally:
            self._kicked_at = None
            if self._encoding is not None:
                self._encoding.cancel()
                self._encoding = None
            # Frames kept from this run are stale once it stops: the next run starts afresh.
            self._latest.clear()
            self._previous = self._spare = None
            self._last_capture = -math.inf

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when a kick or a consumer comes or goes."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _capture(self, *, fused: bool = False) -> bool:
        """One capture: grab, compare and keep; encode a changed frame. Answers whether the
        frame changed (or was forced).

        ``fused`` (a kick's capture, when no encoding is running): the comparison and the
        encoding are one trip to a worker thread, one thread hop less between an input and its
        frame. Otherwise (ticks) the encoding runs in the background once the one before it
        ended, so that the next grab overlaps it (two cores: about twice the rate; a slow
        encoding on a busy machine does not hold the next tick back)."""
        try:
            async with asyncio.timeout(GRAB_TIMEOUT_S):
                raw = await self.screen.grab(self.screen_id, None)
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"grabbing screen {self.screen_id} took longer than {GRAB_TIMEOUT_S:g} s"
            ) from err
        captured_at = time.time()
        self.captures += 1
        force, self._force = self._force, False
        encoders = {c.encoder.key: c.encoder for c in self._consumers}
        busy = not fused or (self._encoding is not None and not self._encoding.done())
        # The spare buffer is free: the encoding that read it finished before the last one began.
        try:
            box, kept, encoded = await asyncio.to_thread(
                _compare_and_keep, self._previous, self._spare, raw, force,
                None if busy else encoders,
            )  # fmt: skip
        except RemoteHandsError:
            raise
        except Exception as err:  # an encoder bug must end the streams, not the agent
            log.exception("encoding screen %s failed", self.screen_id)
            raise DeviceError(f"encoding screen {self.screen_id} failed: {err}") from err
        if box is None:
            await self._settle(encoders)
            return False
        if kept is not self._previous:
            # Assigned here, not in the thread: a run cancelled meanwhile must not keep them.
            self._spare, self._previous = self._previous, kept
        if self._encoding is not None:
            await self._encoding  # one encoding at a time: frames leave in order
            self._encoding = None
        self._seq += 1
        if encoded is not None:
            self._deliver(kept, self._seq, captured_at, encoders, encoded)
        else:
            self._encoding = asyncio.create_task(self._encode(kept, box, self._seq, captured_at,
                                                              encoders))  # fmt: skip
        return True

    async def _settle(self, encoders: dict[Hashable, FrameEncoder]) -> None:
        """The screen did not change: each encoder whose last frame was a reduced one (H.264
        at half size while the screen moved) and whose ``settle_due`` has passed sends the
        kept frame again at full quality, to its own consumers."""
        now = time.monotonic()
        due = {}
        for key, encoder in encoders.items():
            at = getattr(encoder, "settle_due", None)
            if at is not None and at <= now:
                due[key] = encoder
        previous = self._previous
        if not due or previous is None:
            return
        if self._encoding is not None:
            await self._encoding  # frames leave in order
            self._encoding = None
        try:
            settled = await asyncio.to_thread(_settle_all, previous, due)
        except RemoteHandsError:
            raise
        except Exception as err:  # an encoder bug must end the streams, not the agent
            log.exception("encoding screen %s failed", self.screen_id)
            raise DeviceError(f"encoding screen {self.screen_id} failed: {err}") from err
        if settled:
            self._seq += 1
            self._deliver(previous, self._seq, time.time(), encoders, settled, only=True)

    async def _encode(
        self,
        kept: FrameArray,
        box: Bounds,
        seq: int,
        captured_at: float,
        encoders: dict[Hashable, FrameEncoder],
    ) -> None:
        try:
            encoded = await asyncio.to_thread(_encode_all, kept, box, encoders)
        except RemoteHandsError as err:
            self._fail(err)
            return
        except Exception as err:  # an encoder bug must end the streams, not the agent
            log.exception("encoding screen %s failed", self.screen_id)
            self._fail(DeviceError(f"encoding screen {self.screen_id} failed: {err}"))
            return
        self._deliver(kept, seq, captured_at, encoders, encoded)

    def _deliver(
        self,
        kept: FrameArray,
        seq: int,
        captured_at: float,
        encoders: dict[Hashable, FrameEncoder],
        encoded: dict[Hashable, bytes | Encoded],
        *,
        only: bool = False,
    ) -> None:
        """Hands ``encoded`` out to the consumers of each encoder (``only``: those of the
        encoders in it; the others' latest frames stay as they were)."""
        self.frames += 1
        height, width = kept.shape[:2]
        frames: dict[Hashable, Frame] = {}
        for key, out in encoded.items():
            fmt = encoders[key].format
            if isinstance(out, Encoded):
                if out.data:
                    frames[key] = Frame(seq, captured_at, width, height, fmt, out.data, out.x,
                                        out.y, out.key)  # fmt: skip
            else:
                frames[key] = Frame(seq, captured_at, width, height, fmt, out)
        self._latest = {**self._latest, **frames} if only else frames
        for consumer in self._consumers:
            frame = frames.get(consumer.encoder.key)
            if frame is not None:
                consumer.queue.put(frame)

    def _fail(self, error: RemoteHandsError) -> None:
        log.warning("screen %s: capture stopped: %s", self.screen_id, error.details)
        self.error = error
        for stream in list(self._consumers):
            stream.queue.close(error)
        if self._task is not None:
            self._task.cancel()


def _encode_all(
    frame: FrameArray, box: Bounds, encoders: dict[Hashable, FrameEncoder]
) -> dict[Hashable, bytes | Encoded]:
    """In a worker thread: ``frame`` encoded by each encoder."""
    return {key: encoder.encode(frame, box) for key, encoder in encoders.items()}


def _settle_all(
    frame: FrameArray, encoders: dict[Hashable, FrameEncoder]
) -> dict[Hashable, bytes | Encoded]:
    """In a worker thread: ``frame`` (unchanged) again from each encoder's ``settle`` that has
    something to send."""
    settled: dict[Hashable, bytes | Encoded] = {}
    for key, encoder in encoders.items():
        settle = getattr(encoder, "settle", None)
        out = settle(frame) if callable(settle) else None
        if isinstance(out, bytes | Encoded):
            settled[key] = out
    return settled


def _compare_and_keep(
    previous: FrameArray | None,
    spare: FrameArray | None,
    raw: FrameArray,
    force: bool,
    encoders: dict[Hashable, FrameEncoder] | None,
) -> tuple[Bounds | None, FrameArray, dict[Hashable, bytes | Encoded] | None]:
    """In a worker thread: where ``raw`` differs from ``previous`` (the whole frame when
    ``force``), ``raw`` copied into ``spare`` (or a new buffer) when it does (``raw`` may be
    the driver's buffer; ``previous`` itself when nothing changed), and the kept frame encoded
    by ``encoders`` when they are given and it changed."""
    box = changed_box(previous, raw)
    height, width = raw.shape[:2]
    whole = Bounds(x=0, y=0, width=width, height=height)
    if box is not None or previous is None:
        if spare is None or spare.shape != raw.shape:
            spare = np.empty_like(raw)
        np.copyto(spare, raw)
        # Forced: a consumer waits for a key frame, which is the whole frame.
        kept, box = spare, whole if force else (box or whole)
    elif force:
        kept, box = previous, whole
    else:
        return None, previous, None
    return box, kept, None if encoders is None else _encode_all(kept, box, encoders)


class FrameSources:
    """One :class:`FrameSource` per screen of a device, made on first use."""

    def __init__(
        self, screen: Screen, *, rate: float = DEFAULT_RATE, linger_s: float = 0.5
    ) -> None:
        self.screen = screen
        self.rate = rate
        self.linger_s = linger_s
        self._sources: dict[int, FrameSource] = {}

    def get(self, screen_id: int = 0) -> FrameSource:
        """The source of ``screen_id``."""
        source = self._sources.get(screen_id)
        if source is None:
            source = FrameSource(self.screen, screen_id, rate=self.rate, linger_s=self.linger_s)
            self._sources[screen_id] = source
        return source

    def kick(self) -> int:
        """Input just reached the device: each watched screen captures soon, not at its next
        tick (:meth:`FrameSource.kick`). Answers how many sources will; none while nobody
        watches."""
        return sum(source.kick() for source in self._sources.values())

    async def aclose(self) -> None:
        """Stop every source."""
        for source in self._sources.values():
            await source.aclose()
