"""The ``keyboard`` capability: type text, press keys and combinations, hold and release."""

from __future__ import annotations

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.protocol import params as P
from remotehands.protocol.keys import parse_key, parse_keys
from remotehands.protocol.results import Ok

__all__ = ["key", "key_down", "key_up", "type_"]


@handles("keyboard.type")
async def type_(ctx: ActionContext, p: P.TypeParams) -> Ok:
    """Type text, spread over ``duration_ms``."""
    delay = p.duration_ms / 1000 / len(p.text) if p.duration_ms else 0.0
    await ctx.keyboard.type(p.text, delay)
    return Ok()


@handles("keyboard.key", "keyboard.hotkey")
async def key(ctx: ActionContext, p: P.KeyParams | P.HotkeyParams) -> Ok:
    """Press keys together, hold them ``duration_ms``, release in reverse order."""
    await ctx.press_combo(parse_keys(p.keys), p.duration_ms / 1000)
    return Ok()


@handles("keyboard.down")
async def key_down(ctx: ActionContext, p: P.KeyHoldParams) -> Ok:
    """Hold a key down."""
    await ctx.keyboard.key(parse_key(p.key), True)
    return Ok()


@handles("keyboard.up")
async def key_up(ctx: ActionContext, p: P.KeyHoldParams) -> Ok:
    """Release a held key."""
    await ctx.keyboard.key(parse_key(p.key), False)
    return Ok()
