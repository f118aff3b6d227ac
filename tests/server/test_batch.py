"""The batcher that makes a crowd's small database calls as one."""

from __future__ import annotations

import asyncio

import pytest

from remotehands.server.batch import Batcher

pytestmark = pytest.mark.anyio


async def test_calls_made_while_a_batch_runs_go_together_in_order() -> None:
    batches: list[list[int]] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        entered.set()
        await gate.wait()
        return [item * 10 for item in items]

    async def open_gate() -> int:
        gate.set()  # scheduled after the submits below: they are queued by now
        return -1

    batcher = Batcher(run, max_batch=3)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(entered.wait(), 5)  # a lone call runs at once
    assert batches == [[0]]
    results = await asyncio.wait_for(
        asyncio.gather(first, *(batcher.submit(i) for i in range(1, 6)), open_gate()), 5
    )
    assert results == [0, 10, 20, 30, 40, 50, -1]
    assert batches == [[0], [1, 2, 3], [4, 5]]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    async def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    batcher = Batcher(run)
    with pytest.raises(ValueError, match="unlucky"):
        await asyncio.wait_for(batcher.submit(13), 5)
    assert await asyncio.wait_for(batcher.submit(7), 5) == 7


async def test_a_caller_that_stopped_waiting_is_left_out_of_its_batch() -> None:
    seen: list[int] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        seen.extend(items)
        entered.set()
        await gate.wait()
        return items

    batcher = Batcher(run)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.wait_for(entered.wait(), 5)
    gone = asyncio.create_task(batcher.submit(2))

    async def leave_and_open() -> int:
        gone.cancel()  # scheduled after both submits: both are queued, one gives up
        gate.set()
        return -1

    results = await asyncio.wait_for(asyncio.gather(first, batcher.submit(3), leave_and_open()), 5)
    assert list(results) == [1, 3, -1]
    assert gone.cancelled()
    assert seen == [1, 3]
