"""The ``ocr`` capability: the agent reads the text of its own frames (:mod:`~remotehands.agent.
ocrengine`), finds phrases in it (:mod:`~remotehands.agent.textmatch`), clicks them and waits
for them. Boxes and click points are native screen pixels."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.agent.ocrengine import OcrPage, engine
from remotehands.agent.textmatch import closest, find_phrase
from remotehands.errors import DeviceTimeoutError, NotFoundError, ValidationError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.models import Bounds

__all__ = ["click_text", "find_text", "ocr", "read_screen", "wait_for_text"]

_AMBIGUOUS_MARGIN = 0.05  # matches this close to the best one are as good: which is meant?


async def read_screen(ctx: ActionContext, p: P.OcrParams) -> tuple[OcrPage, Bounds]:
    """Grab the screen (or the region of ``p``) and read it in a worker thread."""
    region = p.region()
    async with ctx.screen_lock:
        # a copy: the driver may reuse the grab's buffer while tesseract still reads it
        frame = np.array(await ctx.screen.grab(p.screen_id, region), copy=True)
    height, width = int(frame.shape[0]), int(frame.shape[1])
    area = region or Bounds(x=0, y=0, width=width, height=height)
    page = await asyncio.to_thread(
        engine().read, frame, (area.x, area.y), p.upscale, p.min_confidence
    )
    return page, area


def _shown(matches: list[R.TextMatch]) -> str:
    return ", ".join(f"{m.text!r} ({m.score:.2f}) at {m.x},{m.y}" for m in matches)


def _not_found(p: P.FindTextParams, page: OcrPage, area: Bounds) -> NotFoundError:
    near = closest(p.text, page.words)
    where = f"in {area.width}x{area.height} at {area.x},{area.y}"
    seen = f"the closest: {_shown(near)}" if near else "no text was read there at all"
    return NotFoundError(
        f"{p.text!r} is not on the screen ({where}, min_score {p.min_score:g}); {seen}. "
        "Read the screen with ocr, change the phrase or lower min_score"
    )


@handles("ocr")
async def ocr(ctx: ActionContext, p: P.OcrParams) -> R.OcrResult:
    """The words and lines of the screen or a region, with boxes and confidence."""
    page, area = await read_screen(ctx, p)
    return R.OcrResult(
        text=page.text,
        words=page.words,
        lines=page.lines,
        region=area,
        upscale=page.upscale,
        engine=engine().name,
        duration_ms=page.duration_ms,
    )


async def _find(ctx: ActionContext, p: P.FindTextParams) -> tuple[list[R.TextMatch], int]:
    started = time.perf_counter()
    page, area = await read_screen(ctx, p)
    matches = find_phrase(p.text, page.words, p.min_score)
    if not matches:
        raise _not_found(p, page, area)
    return matches, round((time.perf_counter() - started) * 1000)


@handles("ocr.find")
async def find_text(ctx: ActionContext, p: P.FindTextParams) -> R.TextMatches:
    """Every match of the phrase; :class:`NotFoundError` with the closest when there is none."""
    matches, took = await _find(ctx, p)
    return R.TextMatches(text=p.text, matches=matches, duration_ms=took)


def _choose(p: P.ClickTextParams, matches: list[R.TextMatch]) -> R.TextMatch:
    if p.index is not None:
        if p.index >= len(matches):
            raise ValidationError(
                f"index {p.index} asked for, but {p.text!r} matched {len(matches)} time(s): "
                f"{_shown(matches)}"
            )
        return matches[p.index]
    best = max(m.score for m in matches)
    good = [m for m in matches if m.score >= best - _AMBIGUOUS_MARGIN]
    if len(good) > 1:
        listed = ", ".join(f"index {matches.index(m)}: {_shown([m])}" for m in good)
        raise ValidationError(
            f"{p.text!r} is on the screen {len(good)} times ({listed}); say which with index, "
            "or give a longer phrase"
        )
    return good[0]


@handles("ocr.click")
async def click_text(ctx: ActionContext, p: P.ClickTextParams) -> R.TextClicked:
    """Find the phrase and click the centre of its box (one match, or the ``index``-th)."""
    matches, _ = await _find(ctx, p)
    target = _choose(p, matches)
    await ctx.mouse.move(target.x, target.y)
    await ctx.mouse.click(p.button, 2 if p.double else 1)
    return R.TextClicked(text=p.text, clicked=target, matches=len(matches))


@handles("ocr.wait")
async def wait_for_text(ctx: ActionContext, p: P.WaitTextParams) -> R.TextWaited:
    """Read the screen every ``poll_interval_ms`` until the phrase is there (or, with ``gone``,
    is not); :class:`DeviceTimeoutError` after ``timeout_ms``."""
    started = time.monotonic()
    deadline = started + p.timeout_ms / 1000
    polls = 0
    while True:
        page, _ = await read_screen(ctx, p)
        polls += 1
        matches = find_phrase(p.text, page.words, p.min_score)
        now = time.monotonic()
        if bool(matches) != p.gone:
            return R.TextWaited(
                text=p.text,
                present=bool(matches),
                waited_ms=round((now - started) * 1000),
                polls=polls,
                matches=matches,
            )
        if now >= deadline:
            break
        await asyncio.sleep(min(p.poll_interval_ms / 1000, max(0.0, deadline - now)))
    if p.gone:
        detail = f"is still on the screen after {p.timeout_ms} ms: {_shown(matches)}"
    else:
        near = closest(p.text, page.words)
        seen = f"the closest: {_shown(near)}" if near else "no text was read"
        detail = f"did not appear within {p.timeout_ms} ms ({polls} reads; {seen})"
    raise DeviceTimeoutError(f"{p.text!r} {detail}; raise timeout_ms or check the phrase")
