"""The x11 driver's X thread: calls run there one at a time, answers and errors come back to the
event loop, a call that outlasts its timeout is a DeviceTimeoutError and the thread goes on."""

from __future__ import annotations

import asyncio
import threading

import pytest
import Xlib.error

from remotehands.drivers.x11.display import XThread
from remotehands.errors import DeviceError, DeviceTimeoutError

pytestmark = pytest.mark.anyio


async def test_calls_run_on_the_thread_in_order_and_errors_come_back() -> None:
    thread = XThread("x11-test", timeout_s=5)
    try:
        seen: list[str] = []

        def record(value: int) -> tuple[str, int]:
            seen.append(threading.current_thread().name)
            return threading.current_thread().name, value * 2

        answers = await asyncio.gather(*(thread.call("record", record, i) for i in range(20)))
        assert [value for _, value in answers] == [i * 2 for i in range(20)]
        assert set(seen) == {"x11-test"} != {threading.current_thread().name}

        def gone() -> None:
            raise Xlib.error.ConnectionClosedError("server")

        with pytest.raises(DeviceError, match="close: the X server closed the connection"):
            await thread.call("close", gone)
        assert await asyncio.to_thread(thread.run, record, 4) == ("x11-test", 8)
    finally:
        await asyncio.to_thread(thread.shutdown)


async def test_a_call_past_its_timeout_is_a_timeout_and_the_thread_goes_on() -> None:
    thread = XThread("x11-test", timeout_s=5)
    release = threading.Event()
    try:
        with pytest.raises(DeviceTimeoutError, match="stuck: the X server did not answer"):
            await thread.call("stuck", release.wait, 10, timeout_s=0.05)
        release.set()  # the late answer finds nobody waiting, and the next call is served
        assert await thread.call("next", lambda: "served") == "served"
    finally:
        release.set()
        await asyncio.to_thread(thread.shutdown)
    with pytest.raises(DeviceError, match="stopped"):
        await thread.call("after", lambda: None)


async def test_try_here_runs_on_the_caller_only_when_the_thread_is_idle() -> None:
    thread = XThread("x11-test", timeout_s=5)
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def here() -> bool:
        ran.append(threading.current_thread().name)
        return True

    try:
        await thread.call("warm", lambda: None)  # the thread counts a call finished at once
        assert thread.try_here("move", here) is True
        assert ran == [threading.current_thread().name]

        def hold() -> None:
            started.set()
            release.wait(10)

        busy = asyncio.ensure_future(thread.call("hold", hold))
        assert await asyncio.to_thread(started.wait, 5)
        # busy (or with work queued): running here would overtake it
        assert thread.try_here("move", here) is False
        assert ran == [threading.current_thread().name]
        release.set()
        await busy
        assert thread.try_here("move", lambda: False) is False  # declined: nothing was done

        def refused() -> bool:
            raise Xlib.error.ConnectionClosedError("server")

        with pytest.raises(DeviceError, match="move: the X server closed the connection"):
            thread.try_here("move", refused)
        assert thread.try_here("move", here) is True  # an error leaves the thread idle
    finally:
        release.set()
        await asyncio.to_thread(thread.shutdown)
    assert thread.try_here("after", here) is False


async def test_soon_runs_after_the_callers_step_here_or_after_the_threads_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    thread = XThread("x11-test", timeout_s=5)
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def flush() -> None:
        ran.append(threading.current_thread().name)

    try:
        await thread.call("warm", lambda: None)
        thread.soon("flush", flush)
        assert ran == []  # not during the caller's step
        await asyncio.sleep(0)
        assert ran == [threading.current_thread().name]  # the thread was idle: here

        def hold() -> None:
            started.set()
            release.wait(10)

        busy = asyncio.ensure_future(thread.call("hold", hold))
        assert await asyncio.to_thread(started.wait, 5)
        thread.soon("flush", flush)
        await asyncio.sleep(0)
        assert len(ran) == 1  # the thread is busy: queued behind its work, not run over it
        release.set()
        await busy
        # a call queued after it is served after it: by then the flush has run on the thread
        assert await thread.call("after", lambda: list(ran)) == [
            threading.current_thread().name,
            "x11-test",
        ]

        def broken() -> None:
            raise Xlib.error.ConnectionClosedError("server")

        with caplog.at_level("WARNING"):
            thread.soon("flush", broken)
            await asyncio.sleep(0)
        assert "flush: the X server closed the connection" in caplog.text
        assert await thread.call("next", lambda: "served") == "served"
    finally:
        release.set()
        await asyncio.to_thread(thread.shutdown)
