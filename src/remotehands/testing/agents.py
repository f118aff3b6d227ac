"""An agent run for the length of a block: for tests that serve devices on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from remotehands.agent.runtime import Agent, DeviceRun

__all__ = ["running", "running_device"]


@contextlib.asynccontextmanager
async def running(agent: Agent, *, settle_s: float = 20.0) -> AsyncIterator[Agent]:
    """Run ``agent`` for the block, entered once every device settled (running, retrying or
    failed, within ``settle_s`` seconds); the agent is cancelled when the block ends."""
    task = asyncio.create_task(agent.run())
    try:
        for run in agent.devices.values():
            await asyncio.wait_for(run.settled.wait(), settle_s)
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_device(
    agent: Agent, name: str, *, settle_s: float = 20.0
) -> AsyncIterator[DeviceRun]:
    """Run ``agent`` for the block and answer its device ``name``, which must be running
    (:class:`AssertionError` naming its state and error otherwise)."""
    async with running(agent, settle_s=settle_s):
        run = agent.devices[name]
        if run.state != "running":
            raise AssertionError(f"device {name} is {run.state}: {run.error!r}")
        yield run
