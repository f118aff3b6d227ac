"""The ``windows`` capability: list, focus, move and close windows; find and close dialogs."""

from __future__ import annotations

import asyncio
import time

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.errors import BusyError, ValidationError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.keys import parse_keys
from remotehands.protocol.models import WindowInfo

__all__ = [
    "close_window",
    "dialog",
    "dialog_close",
    "focus_window",
    "focused_window",
    "move_window",
    "windows",
]


@handles("windows.list")
async def windows(ctx: ActionContext, _: P.NoParams) -> R.WindowList:
    """The top-level windows."""
    return R.WindowList(await ctx.windows.windows())


@handles("windows.focused")
async def focused_window(ctx: ActionContext, _: P.NoParams) -> R.FocusedWindow:
    """The focused window, if any."""
    for window in await ctx.windows.windows():
        if window.is_focused:
            return R.FocusedWindow(window)
    return R.FocusedWindow(None)


async def _active_dialog(ctx: ActionContext) -> WindowInfo | None:
    dialogs = [w for w in await ctx.windows.windows() if w.is_dialog]
    focused = [w for w in dialogs if w.is_focused]
    if focused:
        return focused[0]
    return dialogs[-1] if dialogs else None


@handles("dialog.get")
async def dialog(ctx: ActionContext, _: P.NoParams) -> R.DialogResult:
    """The active dialog: the focused one, else the topmost."""
    return R.DialogResult(dialog=await _active_dialog(ctx))


async def _gone(ctx: ActionContext, window_id: int, within_ms: int) -> bool:
    deadline = time.monotonic() + within_ms / 1000
    while True:
        if all(w.id != window_id for w in await ctx.windows.windows()):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.03)


@handles("dialog.close")
async def dialog_close(ctx: ActionContext, p: P.DialogCloseParams) -> R.DialogClosed:
    """Close the active dialog (or the given one): Escape first, then a close request."""
    if p.window_id is not None:
        found: WindowInfo | None = await ctx.find_window(P.parse_window_id(p.window_id))
    else:
        found = await _active_dialog(ctx)
    if found is None:
        return R.DialogClosed(closed_via=None)
    await ctx.windows.focus_window(found.id)
    if ctx.driver.has("keyboard"):
        await ctx.press_combo(parse_keys("Escape"))
        if await _gone(ctx, found.id, p.wait_dialog_gone_ms):
            return R.DialogClosed(closed_via="escape")
    await ctx.windows.close_window(found.id)
    if await _gone(ctx, found.id, p.wait_dialog_gone_ms):
        return R.DialogClosed(closed_via="close")
    raise BusyError(
        f"dialog {found.id:#x} ({found.title!r}) is still open after Escape and a close "
        f"request; it may be asking a question: take a screenshot and answer it"
    )


@handles("window.focus")
async def focus_window(ctx: ActionContext, p: P.WindowFocusParams) -> R.Ok:
    """Raise and focus a window (``id`` in a path, ``window_id`` in a sequence step)."""
    value = p.id if p.id is not None else p.window_id
    if value is None:
        raise ValidationError("name the window: window_id (a number or 0x... id)")
    await ctx.windows.focus_window(P.parse_window_id(value))  # checked by the model already
    return R.Ok()


@handles("window.move")
async def move_window(ctx: ActionContext, p: P.WindowMoveParams) -> R.WindowMoved:
    """Move and resize a window."""
    window_id = P.parse_window_id(p.id)
    bounds = await ctx.windows.move_window(window_id, p.bounds)
    return R.WindowMoved(id=str(window_id), bounds=bounds)


@handles("window.close")
async def close_window(ctx: ActionContext, p: P.WindowParams) -> R.Ok:
    """Ask a window to close."""
    await ctx.windows.close_window(p.id)
    return R.Ok()
