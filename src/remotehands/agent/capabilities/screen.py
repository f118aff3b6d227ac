"""The ``screen`` capability: screenshots (with wait-for-stable and uploads), variants, screens,
the cursor position."""

from __future__ import annotations

import asyncio

from remotehands.agent import imaging, screenshots, stability
from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.drivers.base import EncodedFrame, EncodedScreen, FrameArray
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.models import Bounds, ImageFormat
from remotehands.protocol.validation import validated

__all__ = ["cursor_position", "screens", "screenshot", "screenshot_variants"]


@handles("screens")
async def screens(ctx: ActionContext, _: P.NoParams) -> R.Screens:
    """The screens of the device."""
    return R.Screens(screens=await ctx.screen.screens())


@handles("screenshot.cursor")
async def cursor_position(ctx: ActionContext, _: P.NoParams) -> R.CursorPosition:
    """Where the pointer is."""
    x, y = await ctx.screen.cursor_position()
    return R.CursorPosition(x=x, y=y)


def _passes_through(p: P.ScreenshotParams) -> bool:
    """Whether the request needs nothing the pixels are needed for, so that a device's own
    encoded frame (a KVM's JPEG) can be answered as it is. The format must match too (checked
    on the frame); the quality is then the device's own, as re-encoding is what this avoids."""
    return (
        not isinstance(p, P.RegionScreenshotParams)
        and p.scale == 1.0
        and not p.cursor_ring
        and not p.wait_stable
    )


async def _snapshot(ctx: ActionContext, p: P.ScreenshotParams) -> EncodedFrame | None:
    if not isinstance(ctx.driver, EncodedScreen) or not _passes_through(p):
        return None
    encoded = await ctx.driver.snapshot(p.screen_id)
    return encoded if encoded is not None and encoded.format == p.format else None


@handles("screenshot", "screenshot.region")
async def screenshot(ctx: ActionContext, p: P.ScreenshotParams) -> R.ScreenshotResult:
    """The screen or a region of it, encoded, after a wait for a stable screen when asked."""
    region = None
    if isinstance(p, P.RegionScreenshotParams):
        region = Bounds(x=p.x, y=p.y, width=p.width, height=p.height)
    quality = p.jpeg_quality if p.jpeg_quality is not None else p.quality
    waited = R.StabilityReport()
    async with ctx.screen_lock:
        encoded = await _snapshot(ctx, p)
        if encoded is not None:
            image, width, height = encoded.data, encoded.width, encoded.height
            native_w, native_h = encoded.width, encoded.height
        else:
            if p.wait_stable:
                settings = P.StabilityParams(
                    pixel_delta=p.pixel_delta,
                    stable_ratio=p.stable_ratio,
                    stable_window_ms=p.stable_window_ms,
                    timeout_ms=p.timeout_ms,
                    poll_interval_ms=p.poll_interval_ms,
                    min_change_ratio=p.min_change_ratio,
                    ignore_region=imaging.parse_regions(p.ignore_region),
                    watch_region=imaging.parse_regions(p.watch_region),
                )
                # ignore_region and watch_region are screen coordinates, also for a region shot
                outcome = await stability.wait_stable(
                    lambda: ctx.screen.grab(p.screen_id, region),
                    settings,
                    origin=(region.x, region.y) if region else (0, 0),
                )
                frame: FrameArray = outcome.frame
                waited = outcome.report()
            else:
                frame = await ctx.screen.grab(p.screen_id, region)
            cursor = await ctx.screen.cursor_position() if p.cursor_ring else None
            image, width, height = await asyncio.to_thread(
                _render, frame, region, cursor, p.scale, p.format, quality
            )
            native_h, native_w = frame.shape[0], frame.shape[1]
    # The size of the screen the frame shows, so that a click naming it after a resolution
    # change is refused; a region shot asks the device (a whole-screen shot is that size).
    screen_size = (native_w, native_h)
    if region is not None:
        shown = next((s for s in await ctx.screen.screens() if s.id == p.screen_id), None)
        screen_size = (shown.width, shown.height) if shown else screen_size
    result = R.ScreenshotResult(
        image=image,
        format=p.format,
        width=width,
        height=height,
        **waited.model_dump(),
        frame_id=ctx.frames.remember(region, p.scale, screen_size, p.screen_id),
        native_width=native_w,
        native_height=native_h,
        scale=p.scale,
        bytes=len(image),
    )
    if p.upload_url:
        result.upload = await screenshots.upload(
            ctx.http(),
            image,
            url=p.upload_url,
            method=p.upload_method,
            upload_format=p.upload_format,
            headers=screenshots.parse_upload_headers(p.upload_header),
            name=p.upload_name,
            image_format=p.format,
        )
        if not p.upload_include_inline:
            result.image = None
    return result


def _render(
    frame: FrameArray,
    region: Bounds | None,
    cursor: tuple[int, int] | None,
    scale: float,
    fmt: ImageFormat,
    quality: int,
) -> tuple[bytes, int, int]:
    if cursor is not None:
        ox, oy = (region.x, region.y) if region else (0, 0)
        frame = imaging.draw_cursor_ring(frame, cursor[0] - ox, cursor[1] - oy)
    if scale != 1.0:
        frame = imaging.scale(frame, scale, scale)
    encoded = imaging.encode(frame, fmt, quality)
    return encoded, int(frame.shape[1]), int(frame.shape[0])


@handles("screenshots")
async def screenshot_variants(ctx: ActionContext, p: P.ScreenshotsParams) -> R.ScreenshotsResult:
    """Several variants of one frame."""
    request = validated(P.ScreenshotsRequest, {"variants": p.variants}, "screenshots")
    async with ctx.screen_lock:
        frame = (await ctx.screen.grab(p.screen_id, None)).copy()

    async def window_bounds(window_id: int) -> Bounds:
        return (await ctx.find_window(window_id)).bounds

    return await screenshots.make_variants(
        frame, request, window_bounds=window_bounds, http=ctx.http()
    )
