"""The ``mouse`` capability: move, click, double-click, scroll, drag, press and release."""

from __future__ import annotations

import asyncio

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.agent.frames import to_native
from remotehands.errors import ValidationError
from remotehands.protocol import params as P
from remotehands.protocol.results import Ok

__all__ = ["click", "double_click", "drag", "mouse_down", "mouse_up", "move", "scroll"]


async def _move_if(ctx: ActionContext, p: P.ClickParams | P.ButtonParams | P.ScrollParams) -> None:
    if (p.x is None) != (p.y is None):
        raise ValidationError("give both x and y, or neither to act at the current position")
    if p.x is not None and p.y is not None:
        await ctx.mouse.move(*await _native(ctx, p.frame_id, p.x, p.y))


async def _native(ctx: ActionContext, frame_id: int | None, x: int, y: int) -> tuple[int, int]:
    return await to_native(ctx.frames, ctx.screen, frame_id, x, y)


@handles("mouse.move")
async def move(ctx: ActionContext, p: P.MoveParams) -> Ok:
    """Move the pointer."""
    await ctx.mouse.move(*await _native(ctx, p.frame_id, p.x, p.y))
    return Ok()


async def _click(ctx: ActionContext, p: P.ClickParams, count: int) -> None:
    # A driver that moves and clicks in one call is asked once: one trip to the device.
    pointed = ctx.pointed_mouse
    if p.x is not None and p.y is not None and pointed is not None:
        x, y = await _native(ctx, p.frame_id, p.x, p.y)
        await pointed.click_at(x, y, p.button, count)
        return
    await _move_if(ctx, p)
    await ctx.mouse.click(p.button, count)


@handles("mouse.click")
async def click(ctx: ActionContext, p: P.ClickParams) -> Ok:
    """Click, at x,y when given."""
    await _click(ctx, p, 1)
    return Ok()


@handles("mouse.double_click")
async def double_click(ctx: ActionContext, p: P.ClickParams) -> Ok:
    """Click twice, at x,y when given."""
    await _click(ctx, p, 2)
    return Ok()


@handles("mouse.scroll")
async def scroll(ctx: ActionContext, p: P.ScrollParams) -> Ok:
    """Scroll, at x,y when given."""
    await _move_if(ctx, p)
    await ctx.mouse.scroll(p.delta_x, p.delta_y)
    return Ok()


@handles("mouse.down")
async def mouse_down(ctx: ActionContext, p: P.ButtonParams) -> Ok:
    """Press a button, at x,y when given."""
    await _move_if(ctx, p)
    await ctx.mouse.button(p.button, True)
    return Ok()


@handles("mouse.up")
async def mouse_up(ctx: ActionContext, p: P.ButtonParams) -> Ok:
    """Release a button, at x,y when given."""
    await _move_if(ctx, p)
    await ctx.mouse.button(p.button, False)
    return Ok()


@handles("mouse.drag")
async def drag(ctx: ActionContext, p: P.DragParams) -> Ok:
    """Press at one point, move to the other in steps over ``duration_ms``, release."""
    from_x, from_y = await _native(ctx, p.frame_id, p.from_x, p.from_y)
    to_x, to_y = ctx.frames.native(p.frame_id, p.to_x, p.to_y)  # the same frame, just checked
    await ctx.mouse.move(to_x, to_y)  # validates the end point before pressing
    await ctx.mouse.move(from_x, from_y)
    await ctx.mouse.button(p.button, True)
    try:
        steps = max(2, min(100, p.duration_ms // 10))
        pause = p.duration_ms / 1000 / steps
        for i in range(1, steps + 1):
            x = round(from_x + (to_x - from_x) * i / steps)
            y = round(from_y + (to_y - from_y) * i / steps)
            await ctx.mouse.move(x, y)
            if pause:
                await asyncio.sleep(pause)
    finally:
        await ctx.mouse.button(p.button, False)
    return Ok()
