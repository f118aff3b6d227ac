"""The ``act`` capability: run a batch of steps, then answer once the screen has settled.

An agent acting on a screen needs to know what its input did. ``act`` runs the steps as a
sequence does (each validated and checked on its own; a failure stops the batch unless
``on_error`` is ``continue``), and after each step looks, for at most ``step_wait_ms``, for the
screen to change, so each step reports whether it had a visible effect. Then it waits until the
screen is still (:func:`remotehands.agent.stability.wait_stable`: a thresholded difference that
tolerates JPEG noise and a blinking caret, never an equality of hashes) and answers at once,
with the settled screenshot, the regions that changed since before the first step (cells of
:data:`CELL` pixels, joined into boxes; a blinking caret may show as one small box) and each
step's result. A screen that never settles
gives ``timed_out`` and the last frame, after ``timeout_ms``.

The dispatcher holds the device lock for the whole batch. Frames are copied into pooled
buffers; the diffs run in worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from remotehands.agent import imaging, stability
from remotehands.agent.capabilities.registry import handles
from remotehands.agent.capabilities.sequence import release_held, run_step
from remotehands.agent.context import ActionContext
from remotehands.agent.imaging import POOL
from remotehands.drivers.base import FrameArray
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.models import Bounds

__all__ = ["CELL", "MAX_REGIONS", "act", "changed_regions"]

CELL: Final = 16
"""Changed regions are found on a grid of cells this many pixels wide and high."""
MAX_REGIONS: Final = 32
"""At most this many regions are answered (the largest ones)."""
_CELL_MIN_PIXELS: Final = 2  # a lone pixel over the threshold in a cell is noise
_STEP_POLL_S: Final = 0.005  # how often to look for a step's effect within step_wait_ms
_T = TypeVar("_T")


def changed_regions(
    before: FrameArray, after: FrameArray, pixel_delta: int, ignore: list[Bounds] | None = None
) -> list[Bounds]:
    """The boxes (native pixels) of the areas that differ between two frames of one size: cells
    of :data:`CELL` pixels where at least two pixels moved by more than ``pixel_delta`` in a
    channel, joined with their 8 neighbours. ``ignore`` areas do not count."""
    if before.shape != after.shape:
        height, width = int(after.shape[0]), int(after.shape[1])
        return [Bounds(x=0, y=0, width=width, height=height)]
    height, width = int(before.shape[0]), int(before.shape[1])
    exact = before.view(np.uint32)[..., 0] != after.view(np.uint32)[..., 0]
    rows = np.flatnonzero(exact.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(exact.any(axis=0))
    # only the box of exact change gets the thresholded diff, aligned to the cell grid
    top, left = (int(rows[0]) // CELL) * CELL, (int(cols[0]) // CELL) * CELL
    bottom, right = int(rows[-1]) + 1, int(cols[-1]) + 1
    a = before[top:bottom, left:right, :3]
    b = after[top:bottom, left:right, :3]
    over: npt.NDArray[np.bool_] = np.asarray(
        ((np.maximum(a, b) - np.minimum(a, b)) > pixel_delta).any(axis=2)
    )
    for area in ignore or ():
        y0, x0 = max(0, area.y - top), max(0, area.x - left)
        y1, x1 = max(0, area.y + area.height - top), max(0, area.x + area.width - left)
        over[y0:y1, x0:x1] = False
    h, w = over.shape
    grid_h, grid_w = -(-h // CELL), -(-w // CELL)
    padded = np.zeros((grid_h * CELL, grid_w * CELL), np.uint16)
    padded[:h, :w] = over
    counts = padded.reshape(grid_h, CELL, grid_w, CELL).sum(axis=(1, 3))
    boxes = _components(counts >= _CELL_MIN_PIXELS)
    regions = []
    for r0, c0, r1, c1 in boxes:
        x, y = left + c0 * CELL, top + r0 * CELL
        regions.append(
            Bounds(
                x=x,
                y=y,
                width=min(width, left + (c1 + 1) * CELL) - x,
                height=min(height, top + (r1 + 1) * CELL) - y,
            )
        )
    regions.sort(key=lambda b: b.width * b.height, reverse=True)
    kept = regions[:MAX_REGIONS]
    kept.sort(key=lambda b: (b.y, b.x))
    return kept


def _components(cells: npt.NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """The bounding boxes (row0, col0, row1, col1, inclusive) of the 8-connected groups of
    true cells."""
    seen = np.zeros_like(cells)
    boxes = []
    grid_h, grid_w = cells.shape
    for start in zip(*np.nonzero(cells), strict=True):
        r, c = int(start[0]), int(start[1])
        if seen[r, c]:
            continue
        seen[r, c] = True
        stack = [(r, c)]
        r0, c0, r1, c1 = r, c, r, c
        while stack:
            y, x = stack.pop()
            r0, c0, r1, c1 = min(r0, y), min(c0, x), max(r1, y), max(c1, x)
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < grid_h and 0 <= nx < grid_w and cells[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        boxes.append((r0, c0, r1, c1))
    return boxes


async def _threaded(function: Callable[..., _T], *args: object) -> _T:
    return await asyncio.to_thread(function, *args)


class _Frames:
    """Copies of the screen taken between steps, in pooled buffers."""

    def __init__(self, ctx: ActionContext, p: P.ActParams) -> None:
        self._ctx = ctx
        self._p = p
        self._held: list[FrameArray] = []

    async def take(self) -> FrameArray:
        async with self._ctx.screen_lock:
            frame = await self._ctx.screen.grab(self._p.screen_id, None)
            copy = POOL.take(frame.shape)
            np.copyto(copy, frame)
        self._held.append(copy)
        return copy

    def give(self, frame: FrameArray) -> None:
        if any(frame is held for held in self._held):
            self._held = [held for held in self._held if held is not frame]
            POOL.give(frame)

    def close(self) -> None:
        for frame in self._held:
            POOL.give(frame)
        self._held = []


def _moved(diff: stability.FrameDiff, p: P.ActParams, before: FrameArray, now: FrameArray) -> bool:
    # A count, not the settle's share of the screen: a typed word is 0.03 % of 1080p
    return diff.ratio(before, now) * diff.watched_pixels > p.change_pixels


@handles("act")
async def act(ctx: ActionContext, p: P.ActParams) -> R.ActResult:
    """Run the steps, then answer the settled screen, what changed and each step's result."""
    started = time.perf_counter()
    frames = _Frames(ctx, p)
    results: list[R.StepResult] = []
    changed: list[bool] = []
    aborted_at: str | int | None = None
    diff: stability.FrameDiff | None = None
    try:
        first = await frames.take()
        height, width = int(first.shape[0]), int(first.shape[1])
        diff = stability.FrameDiff(height, width, p.pixel_delta, ignore=p.ignore_region)
        before = first
        try:
            for index, step in enumerate(p.steps):
                entry = await run_step(ctx, step)
                results.append(entry)
                after, moved = await _look_for_change(frames, diff, p, before)
                changed.append(moved)
                if before is not first:
                    frames.give(before)
                before = after
                if not entry.ok and p.on_error == "abort":
                    aborted_at = step.name if step.name is not None else index
                    break
        finally:
            if any(not r.ok for r in results):
                await release_held(ctx)
        outcome = await _settle(ctx, p)
        settled = outcome.frame
        try:
            if changed and not changed[-1]:
                # the last step's effect may have come during the settle
                changed[-1] = await _threaded(_moved, diff, p, before, settled)
            # the regions and the image are independent: two cores, two threads
            found = _threaded(changed_regions, first, settled, p.pixel_delta, p.ignore_region)
            if p.screenshot:
                regions, shot = await asyncio.gather(found, _screenshot(ctx, p, settled, outcome))
            else:
                regions, shot = await found, None
        finally:
            POOL.give(settled)
    finally:
        if diff is not None:
            diff.close()
        frames.close()
    return R.ActResult(
        results=results,
        changed=changed,
        aborted_at=aborted_at,
        settled=outcome.stable,
        timed_out=outcome.timed_out,
        settle_ms=outcome.waited_ms,
        polls=outcome.polls,
        changed_regions=regions,
        screenshot=shot,
        total_duration_ms=round((time.perf_counter() - started) * 1000),
    )


async def _look_for_change(
    frames: _Frames, diff: stability.FrameDiff, p: P.ActParams, before: FrameArray
) -> tuple[FrameArray, bool]:
    """The screen after a step and whether it differs from ``before``, looking again for up to
    ``step_wait_ms`` while it does not (a repaint takes a moment)."""
    deadline = time.monotonic() + p.step_wait_ms / 1000
    while True:
        now = await frames.take()
        moved = await _threaded(_moved, diff, p, before, now)
        if moved or time.monotonic() >= deadline:
            return now, moved
        frames.give(now)
        await asyncio.sleep(_STEP_POLL_S)


async def _settle(ctx: ActionContext, p: P.ActParams) -> stability.StabilityResult:
    settings = P.StabilityParams(
        pixel_delta=p.pixel_delta,
        stable_ratio=p.stable_ratio,
        stable_window_ms=p.stable_window_ms,
        timeout_ms=p.timeout_ms,
        poll_interval_ms=p.poll_interval_ms,
        ignore_region=p.ignore_region,
    )
    async with ctx.screen_lock:
        return await stability.wait_stable(lambda: ctx.screen.grab(p.screen_id, None), settings)


async def _screenshot(
    ctx: ActionContext, p: P.ActParams, frame: FrameArray, outcome: stability.StabilityResult
) -> R.ScreenshotResult:
    def render() -> tuple[bytes, int, int]:
        image = imaging.scale(frame, p.scale, p.scale) if p.scale != 1.0 else frame
        return imaging.encode(image, p.format, p.quality), int(image.shape[1]), int(image.shape[0])

    data, width, height = await asyncio.to_thread(render)
    return R.ScreenshotResult(
        image=data,
        format=p.format,
        width=width,
        height=height,
        **outcome.report().model_dump(),
        frame_id=ctx.frames.remember(
            None, p.scale, (int(frame.shape[1]), int(frame.shape[0])), p.screen_id
        ),
        native_width=int(frame.shape[1]),
        native_height=int(frame.shape[0]),
        scale=p.scale,
        bytes=len(data),
    )
