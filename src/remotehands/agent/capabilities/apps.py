"""The ``apps`` capability: start programs, see whether they run, close their windows."""

from __future__ import annotations

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.actions import ACTIONS_BY_NAME

__all__ = ["app_running", "close_app", "open_app"]


@handles("application.open")
async def open_app(ctx: ActionContext, p: P.AppOpenParams) -> R.AppOpened:
    """Start a program."""
    return R.AppOpened(pid=await ctx.apps.open_app(p.path, p.args))


@handles("application.running")
async def app_running(ctx: ActionContext, p: P.AppRunningParams) -> R.AppRunning:
    """Whether a program runs, by executable name."""
    pids = await ctx.apps.app_running(p.name)
    return R.AppRunning(running=bool(pids), pids=pids)


@handles("application.close")
async def close_app(ctx: ActionContext, p: P.AppCloseParams) -> R.Ok:
    """Close an application's window (which needs the windows capability too)."""
    ctx.check(ACTIONS_BY_NAME["window.close"])
    await ctx.windows.close_window(P.parse_window_id(p.window_id))
    return R.Ok()
