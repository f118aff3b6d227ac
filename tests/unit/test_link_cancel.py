"""A stop asked for while the link's task group is closing is not lost: Python 3.11's TaskGroup
drops a cancellation that arrives while it cancels its tasks for an error of its own (the link
closing as SIGTERM comes), and :func:`stop_if_cancelled` finds it again."""

from __future__ import annotations

import asyncio

import pytest

from remotehands.agent.link import stop_if_cancelled

pytestmark = pytest.mark.anyio


class _Closed(Exception):
    pass


async def _session(in_cleanup: asyncio.Event, release: asyncio.Event) -> None:
    """A link session whose group ends by an error of its own (the link closed), with a task
    that takes a moment to stop (as the heartbeat task's send may)."""

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            in_cleanup.set()
            await release.wait()
            raise

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(child())
            await asyncio.sleep(0)  # the child is running
            raise _Closed
    except* _Closed:
        pass


@pytest.mark.parametrize("check", [False, True])
async def test_a_cancel_the_task_group_dropped_is_found_again(check: bool) -> None:
    in_cleanup, release = asyncio.Event(), asyncio.Event()
    loops = 0

    async def run() -> None:
        nonlocal loops
        while loops < 2:  # the link loop: a session, then (unless stopped) the next one
            loops += 1
            await _session(in_cleanup, release)
            if check:
                stop_if_cancelled()
            in_cleanup.clear()

    task = asyncio.create_task(run())
    await asyncio.wait_for(in_cleanup.wait(), 5)
    task.cancel()  # SIGTERM, while the group waits for its child to stop
    release.set()
    await asyncio.wait({task}, timeout=5)
    assert task.done()
    if check:
        assert task.cancelled() and loops == 1
    else:  # what stop_if_cancelled is for: the group lost the cancel, and the loop went on
        assert not task.cancelled() and loops == 2
