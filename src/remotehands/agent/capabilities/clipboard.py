"""The ``clipboard`` capability: the OS clipboard, and the agent's named slots and captures."""

from __future__ import annotations

import asyncio

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.errors import RemoteHandsError, ValidationError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.actions import ACTIONS_BY_NAME
from remotehands.protocol.keys import parse_keys

__all__ = [
    "capture",
    "clipboard_get",
    "clipboard_set",
    "slot_delete",
    "slot_get",
    "slot_restore",
    "slot_store",
    "slots",
    "slots_clear",
]


def _truncate(text: str, max_bytes: int) -> tuple[str, bool]:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text, False
    return data[:max_bytes].decode("utf-8", errors="ignore"), True


@handles("clipboard.get")
async def clipboard_get(ctx: ActionContext, p: P.ClipboardGetParams) -> R.ClipboardText:
    """The clipboard's text, cut at ``max_bytes``."""
    text, truncated = _truncate(await ctx.clipboard.clipboard_get(), p.max_bytes)
    return R.ClipboardText(text=text, length=len(text), truncated=truncated)


@handles("clipboard.set")
async def clipboard_set(ctx: ActionContext, p: P.ClipboardSetParams) -> R.Ok:
    """Put text on the clipboard."""
    await ctx.clipboard.clipboard_set(p.text)
    return R.Ok()


@handles("clipboard.slots")
async def slots(ctx: ActionContext, _: P.NoParams) -> R.SlotList:
    """Every slot."""
    return R.SlotList(ctx.slots.listing())


@handles("clipboard.slot_get")
async def slot_get(ctx: ActionContext, p: P.SlotParams) -> R.SlotText:
    """A slot with its text."""
    return ctx.slots.get(p.name)


@handles("clipboard.slot_store")
async def slot_store(ctx: ActionContext, p: P.SlotStoreParams) -> R.SlotStored:
    """Store text in a slot."""
    ctx.slots.store(p.name, p.text)
    return R.SlotStored(name=p.name, length=len(p.text))


@handles("clipboard.slot_delete")
async def slot_delete(ctx: ActionContext, p: P.SlotParams) -> R.NoContent:
    """Forget a slot."""
    ctx.slots.delete(p.name)
    return R.NoContent()


@handles("clipboard.slots_clear")
async def slots_clear(ctx: ActionContext, _: P.NoParams) -> R.NoContent:
    """Forget every slot."""
    ctx.slots.clear()
    return R.NoContent()


@handles("clipboard.slot_restore")
async def slot_restore(ctx: ActionContext, p: P.SlotRestoreParams) -> R.SlotStored:
    """Put a slot back on the OS clipboard."""
    name = p.name or p.slot_name
    if not name:
        raise ValidationError("name the slot to restore (slot_name in a sequence step)")
    text = ctx.slots.get(name).text
    await ctx.clipboard.clipboard_set(text)
    return R.SlotStored(name=name, length=len(text))


@handles("clipboard.capture")
async def capture(ctx: ActionContext, p: P.CaptureParams) -> R.CaptureResult:
    """For each capture: focus a window, select all, copy, settle, store the text in a slot.
    Each capture succeeds or fails on its own."""
    results = []
    for one in p.captures:
        try:
            if one.focus_window_id is not None:
                ctx.check(ACTIONS_BY_NAME["window.focus"])
                await ctx.windows.focus_window(P.parse_window_id(one.focus_window_id))
            if one.select_all:
                await ctx.press_combo(parse_keys("ctrl+a"))
            if one.copy_:
                await ctx.press_combo(parse_keys("ctrl+c"))
            if one.settle_ms:
                await asyncio.sleep(one.settle_ms / 1000)
            text, truncated = _truncate(await ctx.clipboard.clipboard_get(), one.max_bytes)
            ctx.slots.store(one.slot, text)
            results.append(R.CaptureEntry(slot=one.slot, text=text, length=len(text),
                                          truncated=truncated, ok=True))  # fmt: skip
        except RemoteHandsError as err:
            results.append(
                R.CaptureEntry(slot=one.slot, ok=False, error=err.code, details=err.details)
            )
    return R.CaptureResult(results=results)
