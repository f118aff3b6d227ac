"""Many small database calls made as one: what a crowd of reconnecting agents asks at once.

When a server restarts, its whole fleet says hello within a few seconds; one lookup and one
write per agent would hold a pooled connection each and queue on SQLite's single writer (a
thousand agents time out waiting for the pool). A :class:`Batcher` gathers the calls made while
the previous batch ran and makes them as one: no added wait for a lone caller (its call runs at
once), and under a crowd one transaction per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Runs ``run(items)`` for the items submitted meanwhile, at most ``max_batch`` at a time,
    one batch after the other.

    ``run`` returns one result per item, in order. An exception from ``run`` is raised to every
    caller of that batch. A caller that stops waiting (cancelled, timed out) leaves its item to
    be dropped if its batch has not started yet.
    """

    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = 500
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """The result of ``item``, run in the next batch."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="link-batcher")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = [(item, f) for item, f in self._pending[: self._max_batch] if not f.done()]
            del self._pending[: self._max_batch]
            if not batch:
                continue
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as err:  # noqa: BLE001 - handed to every caller of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            except asyncio.CancelledError:
                for _, future in batch + self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
