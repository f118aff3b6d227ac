"""Running a long-lived coroutine from a command until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

__all__ = ["run_until_signal"]


def run_until_signal(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; SIGINT or SIGTERM cancels it so its cleanup (held keys, links) runs."""

    async def runner() -> None:
        task = asyncio.create_task(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        import uvloop

        uvloop.run(runner())
    except ImportError:
        asyncio.run(runner())
