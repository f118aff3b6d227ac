"""The agent's own ``actions``: the recent action log of the device."""

from __future__ import annotations

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.protocol import params as P
from remotehands.protocol.results import ActionLogResult

__all__ = ["actions"]


@handles("actions")
async def actions(ctx: ActionContext, p: P.ActionsParams) -> ActionLogResult:
    """The recent actions, newest first."""
    return ActionLogResult(ctx.log.entries(p.limit))
