"""Wait until the screen stops changing: the ``wait_stable`` of screenshots.

The screen is polled every ``poll_interval_ms``. Between consecutive polls a pixel counts as
changed when any of its B, G, R channels differs by more than ``pixel_delta``; a poll counts as
still when the changed share of the watched pixels, in percent, is at most ``stable_ratio``.
The screen is stable once it has stayed still for ``stable_window_ms``; with
``min_change_ratio`` the wait first needs the screen to differ from the first frame by that
fraction (the click's effect to start), then to settle. Past ``timeout_ms`` the wait gives up
and reports ``timed_out``.

The diff is the hot part (1080p, ``PERFORMANCE.md``): the naive numpy way costs 55-70 ms a
poll. Here one exact pixel compare (~0.6 ms) answers the common still case and bounds the
changed area; only that box gets the thresholded diff, done in place in ``uint8`` with
preallocated scratch (~4 ms for a whole changed frame). The work runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from remotehands.agent.imaging import POOL, clip_bounds
from remotehands.drivers.base import FrameArray
from remotehands.errors import DeviceTimeoutError, ValidationError
from remotehands.protocol.models import Bounds
from remotehands.protocol.params import StabilityParams
from remotehands.protocol.results import StabilityReport

__all__ = [
    "FrameDiff",
    "StabilityParams",
    "StabilityResult",
    "wait_stable",
]

_INLINE_BYTES: Final = 1 << 16  # frames this small are diffed on the loop: a thread hop costs more
_BGR_MASK: Final = np.uint32(0x00FFFFFF)  # the B, G, R bytes of a little-endian BGRX pixel
_T = TypeVar("_T")


@dataclass
class StabilityResult:
    """What :func:`wait_stable` saw, in the reference's response fields plus the last frame."""

    stable: bool
    """The screen stayed still for ``stable_window_ms``."""
    timed_out: bool
    """``timeout_ms`` passed first (or the change ``min_change_ratio`` asked for never came)."""
    waited_ms: int
    """From the start to the last poll."""
    polls: int
    """Frames grabbed, the first included."""
    change_ratio_last: float
    """Changed fraction of watched pixels between the last two polls (0.0 after one poll)."""
    frame: FrameArray
    """The last frame grabbed, owned by the caller (a copy); encode it, no second grab needed.
    It may go back to :data:`~remotehands.agent.imaging.POOL` when done with."""

    def report(self) -> StabilityReport:
        """The reference's stability fields of a screenshot response."""
        return StabilityReport(
            stable=self.stable,
            timed_out=self.timed_out,
            waited_ms=self.waited_ms,
            polls=self.polls,
            change_ratio_last=self.change_ratio_last,
        )

    def to_wire(self) -> dict[str, Any]:
        """:meth:`report` in its wire form."""
        wire: dict[str, Any] = self.report().model_dump()
        return wire


class FrameDiff:
    """Counts the changed share of watched pixels between frames of one size.

    Built once per wait: it turns the regions into a box to compare (the bounding box of what is
    watched) and, only when that box holds unwatched pixels, a per-pixel mask. ``ignore`` and
    ``watch`` are in frame coordinates and clipped to the frame. Not thread-safe: one wait, one
    instance; call :meth:`close` to hand its scratch memory back to the pool.
    """

    def __init__(
        self,
        height: int,
        width: int,
        pixel_delta: int = 30,
        ignore: Iterable[Bounds] = (),
        watch: Iterable[Bounds] = (),
    ) -> None:
        self.shape: Final = (height, width)
        self._delta = np.uint8(pixel_delta)
        watch, ignore = list(watch), list(ignore)
        watched = [b for b in (clip_bounds(r, width, height) for r in watch) if b is not None]
        ignored = [b for b in (clip_bounds(r, width, height) for r in ignore) if b is not None]
        if watch and not watched:
            raise ValidationError(
                f"every watch_region lies outside the {width}x{height} frame: nothing to watch"
            )
        mask: npt.NDArray[np.bool_] | None = None
        self._box = (0, height, 0, width)
        self.watched_pixels = height * width
        """How many pixels count: the denominator of :meth:`ratio`."""
        if watched or ignored:
            mask = np.full((height, width), not watched, np.bool_)
            for b in watched:
                mask[b.y : b.y + b.height, b.x : b.x + b.width] = True
            for b in ignored:
                mask[b.y : b.y + b.height, b.x : b.x + b.width] = False
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                raise ValidationError(
                    f"ignore_region covers all that is watched of the {width}x{height} frame: "
                    "nothing left to watch"
                )
            self._box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            top, bottom, left, right = self._box
            mask = mask[top:bottom, left:right]
            self.watched_pixels = int(np.count_nonzero(mask))
            if self.watched_pixels == mask.size:
                mask = None  # one rectangle: slicing says it all
        self._mask32 = None if mask is None else np.where(mask, _BGR_MASK, np.uint32(0))
        top, bottom, left, right = self._box
        self._box_pixels = (bottom - top) * (right - left)
        self._whole = self._box == (0, height, 0, width)
        self._scratch: dict[str, FrameArray] = {}
        self.identical = False
        """Whether the last :meth:`ratio` found every pixel of the frames equal."""

    def ratio(self, before: FrameArray, after: FrameArray) -> float:
        """The fraction (0..1) of watched pixels that changed from ``before`` to ``after``;
        1.0 when their sizes differ."""
        self.identical = False
        if before.shape[:2] != self.shape or after.shape[:2] != self.shape:
            return 1.0
        top, bottom, left, right = self._box
        old = _pixels(before)[top:bottom, left:right]
        new = _pixels(after)[top:bottom, left:right]
        exact = self._buffer("exact", self._box_pixels).view(np.bool_).reshape(old.shape)
        np.not_equal(old, new, out=exact)
        changed_rows = np.flatnonzero(exact.any(axis=1))
        if changed_rows.size == 0:
            self.identical = self._whole
            return 0.0
        changed_cols = np.flatnonzero(exact.any(axis=0))
        r0, r1 = int(changed_rows[0]), int(changed_rows[-1]) + 1
        c0, c1 = int(changed_cols[0]), int(changed_cols[-1]) + 1
        count = self._count_over_delta(
            before[top + r0 : top + r1, left + c0 : left + c1],
            after[top + r0 : top + r1, left + c0 : left + c1],
            None if self._mask32 is None else self._mask32[r0:r1, c0:c1],
        )
        return count / self.watched_pixels

    def _count_over_delta(
        self,
        before: FrameArray,
        after: FrameArray,
        mask32: npt.NDArray[np.uint32] | None,
    ) -> int:
        """Pixels where a B, G or R byte moved by more than the delta, all in place: |a-b| as
        max-min in ``uint8``, ``>`` into bools, the four bools of a pixel read as one ``uint32``
        with the X byte (and unwatched pixels) masked off, a count."""
        shape = before.shape
        size = shape[0] * shape[1] * 4
        high = self._buffer("high", self._box_pixels * 4)[:size].reshape(shape)
        low = self._buffer("low", self._box_pixels * 4)[:size].reshape(shape)
        np.maximum(before, after, out=high)
        np.minimum(before, after, out=low)
        np.subtract(high, low, out=high)
        np.greater(high, self._delta, out=low.view(np.bool_))
        flags = low.view(np.uint32)[..., 0]
        np.bitwise_and(flags, _BGR_MASK if mask32 is None else mask32, out=flags)
        return int(np.count_nonzero(flags))

    def _buffer(self, name: str, size: int) -> FrameArray:
        buffer = self._scratch.get(name)
        if buffer is None:
            buffer = self._scratch[name] = POOL.take((size,))
        return buffer

    def close(self) -> None:
        """Hand the scratch buffers back to the pool; the instance stays usable."""
        for buffer in self._scratch.values():
            POOL.give(buffer)
        self._scratch = {}


def _pixels(frame: FrameArray) -> npt.NDArray[np.uint32]:
    """The frame as one ``uint32`` a pixel, a view."""
    view: npt.NDArray[np.uint32] = frame.view(np.uint32)[..., 0]
    return view


def _usable(frame: FrameArray) -> FrameArray:
    """``frame`` checked, with contiguous pixels so that the ``uint32`` views work."""
    if frame.ndim != 3 or frame.shape[2] != 4 or frame.dtype != np.uint8:
        raise ValidationError(
            f"a frame must be a (height, width, 4) uint8 BGRX array, got shape {frame.shape} "
            f"of {frame.dtype}"
        )
    return frame if frame.strides[1:] == (4, 1) else np.ascontiguousarray(frame)


class _Watch:
    """The frames one wait keeps (copies: ``grab`` may reuse its buffer) and its diff."""

    def __init__(self, params: StabilityParams, origin: tuple[int, int]) -> None:
        self._params = params
        self._origin = origin
        self._keep_first = params.min_change_ratio is not None
        self._diff: FrameDiff | None = None
        self.last: FrameArray | None = None
        self._first: FrameArray | None = None

    def start(self, frame: FrameArray) -> None:
        """Begin with ``frame``: size the diff to it and keep a copy."""
        frame = _usable(frame)
        self.close(keep_last=False)
        height, width = frame.shape[:2]
        ox, oy = self._origin
        self._diff = FrameDiff(
            height,
            width,
            self._params.pixel_delta,
            ignore=[_shift(b, ox, oy) for b in self._params.ignore_region],
            watch=[_shift(b, ox, oy) for b in self._params.watch_region],
        )
        self.last = POOL.take(frame.shape)
        np.copyto(self.last, frame)
        if self._keep_first:
            self._first = POOL.take(frame.shape)
            np.copyto(self._first, frame)

    def observe(self, frame: FrameArray) -> tuple[float, float | None]:
        """The changed fractions since the last frame and since the first (when kept); keeps a
        copy of ``frame`` as the last."""
        frame = _usable(frame)
        if self._diff is None or self.last is None or frame.shape != self.last.shape:
            self.start(frame)  # the resolution changed: everything did
            return 1.0, (1.0 if self._keep_first else None)
        since_last = self._diff.ratio(self.last, frame)
        if not self._diff.identical:  # an identical frame needs no copy
            np.copyto(self.last, frame)
        since_first = None if self._first is None else self._diff.ratio(self._first, frame)
        return since_last, since_first

    def drop_first(self) -> None:
        """The first frame is no longer needed: the change came."""
        self._keep_first = False
        if self._first is not None:
            POOL.give(self._first)
            self._first = None

    def close(self, keep_last: bool = True) -> None:
        """Give back what the wait holds, except the last frame when ``keep_last``."""
        if self._diff is not None:
            self._diff.close()
            self._diff = None
        if self._first is not None:
            POOL.give(self._first)
            self._first = None
        if not keep_last and self.last is not None:
            POOL.give(self.last)
            self.last = None


def _shift(bounds: Bounds, dx: int, dy: int) -> Bounds:
    return Bounds(x=bounds.x - dx, y=bounds.y - dy, width=bounds.width, height=bounds.height)


async def _offload(function: Callable[[FrameArray], _T], frame: FrameArray) -> _T:
    """Run ``function(frame)`` in a thread, or here when the frame is too small to matter."""
    if frame.nbytes <= _INLINE_BYTES:
        return function(frame)
    return await asyncio.to_thread(function, frame)


async def wait_stable(
    grab: Callable[[], Awaitable[FrameArray]],
    params: StabilityParams,
    *,
    origin: tuple[int, int] = (0, 0),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    grab_timeout_s: float = 10.0,
) -> StabilityResult:
    """Poll ``grab`` until the screen is stable or ``params.timeout_ms`` passes.

    ``origin`` is where the frames' top-left pixel lies in the coordinates the regions use
    (a region grab at ``x, y`` passes ``(x, y)``). ``clock`` (seconds) and ``sleep`` are
    injectable so tests need not wait. Each grab has ``grab_timeout_s`` to answer, else
    :class:`~remotehands.errors.DeviceTimeoutError`. The diffs and copies run in a thread.
    """
    watch = _Watch(params, origin)

    async def poll() -> FrameArray:
        try:
            async with asyncio.timeout(grab_timeout_s):
                return await grab()
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"the screen grab did not answer within {grab_timeout_s:g} s"
            ) from err

    min_change = params.min_change_ratio
    interval = params.poll_interval_ms / 1000
    window = params.stable_window_ms / 1000
    started = clock()
    deadline = started + params.timeout_ms / 1000
    # On an error or a cancellation the buffers are left to the garbage collector, not given
    # back to the pool: a diff cancelled mid-way may still be writing to them in its thread.
    await _offload(watch.start, await poll())
    polls = 1
    now = still_since = clock()
    last_still = False  # stable needs at least one still comparison
    ratio = 0.0
    while not (last_still and now - still_since >= window) and now < deadline:
        await sleep(min(interval, deadline - now))
        frame = await poll()
        polls += 1
        ratio, since_first = await _offload(watch.observe, frame)
        now = clock()
        if min_change is not None:
            if since_first is not None and since_first >= min_change:
                min_change = None
                still_since = now
                watch.drop_first()
        elif ratio * 100 <= params.stable_ratio:
            last_still = True
        else:
            last_still = False
            still_since = now
    watch.close()
    assert watch.last is not None
    stable = last_still and now - still_since >= window
    return StabilityResult(
        stable=stable,
        timed_out=not stable,
        waited_ms=round((now - started) * 1000),
        polls=polls,
        change_ratio_last=ratio,
        frame=watch.last,
    )
