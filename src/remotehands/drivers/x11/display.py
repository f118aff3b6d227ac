"""One X connection, owned by one thread.

Every python-xlib call may block on a socket and our connection state is not meant for two
threads at once, so the driver opens its connection on a dedicated thread (:class:`XThread`)
and runs Xlib calls there, one at a time; the event loop only awaits. The exception: a call
that never waits on the X server (a pointer motion) runs on the event loop itself when the
thread is idle (:meth:`XThread.try_here`), still one at a time. Foreign errors are translated
here, where they enter: Xlib and mss errors become :mod:`remotehands.errors`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import Xlib.error
from mss.exception import ScreenShotError
from Xlib.display import Display

from remotehands.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeoutError,
    NotFoundError,
    RemoteHandsError,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "XConnection",
    "XThread",
    "display_name",
    "open_display",
    "property_bytes",
    "translate_error",
    "xid",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
"""How long one call on the X thread may take before the caller gets a timeout."""


def display_name(display: str | None) -> str:
    """The display to use: ``display``, else ``$DISPLAY``; :class:`ConfigError` when neither."""
    name = display if display is not None else os.environ.get("DISPLAY", "")
    if not name:
        raise ConfigError(
            "no X display: set DISPLAY (for example DISPLAY=:0), pass display=':N' to the x11 "
            "driver, or start a virtual one with `remotehands desktop`"
        )
    return name


logger = logging.getLogger(__name__)


def open_display(name: str) -> Display:
    """Connect to ``name``; a missing or refusing server is a :class:`ConfigError`."""
    try:
        return Display(name)
    except Xlib.error.DisplayNameError as err:
        raise ConfigError(f"bad X display name {name!r}: write it as ':N' or 'host:N'") from err
    except (Xlib.error.DisplayError, Xlib.error.XauthError, OSError) as err:
        raise ConfigError(
            f"cannot connect to the X display {name}: {err}. Check that the X server runs and "
            "that XAUTHORITY names a cookie file it accepts"
        ) from err


def xid(value: Any) -> int:
    """The numeric id of a python-xlib resource, or of a plain id (``X.NONE`` is 0)."""
    rid = getattr(value, "id", value)
    return int(rid)


def translate_error(err: BaseException, what: str) -> RemoteHandsError:
    """The remotehands error for a foreign error raised while doing ``what``."""
    if isinstance(err, RemoteHandsError):
        return err
    if isinstance(err, Xlib.error.BadWindow):
        return NotFoundError(f"{what}: the window no longer exists")
    if isinstance(err, Xlib.error.ConnectionClosedError):
        return DeviceError(f"{what}: the X server closed the connection; is it still running?")
    if isinstance(err, Xlib.error.XError):
        return DeviceError(f"{what}: the X server refused a request: {err}")
    if isinstance(err, ScreenShotError):
        return DeviceError(f"{what}: screen capture failed: {err}")
    return DeviceError(f"{what}: {type(err).__name__}: {err}")


class XThread:
    """A single worker thread: every callable submitted runs there, one at a time.

    A plain thread reading a queue, rather than a :class:`ThreadPoolExecutor`: an action hops
    here and back for every input event, and the executor's bookkeeping (its future chained to
    the event loop's, its thread-count check) made a hop 100 us where this takes 60.
    """

    def __init__(self, name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        # A job runs its Xlib calls and returns what hands the outcome to its caller: that runs
        # once the job is counted finished, so the caller's next call finds the thread idle.
        self._jobs: queue.SimpleQueue[Callable[[], Callable[[], None]] | None] = queue.SimpleQueue()
        self._stopped = False
        # Held while an Xlib call runs, on this thread or (see :meth:`try_here`) the caller's.
        self._exclusive = threading.Lock()
        # Jobs submitted and not yet finished (queued or running), counted under _counting.
        self._unfinished = 0
        self._counting = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._exclusive:
                hand_over = job()
            with self._counting:
                self._unfinished -= 1
            hand_over()

    def _submit(self, job: Callable[[], Callable[[], None]]) -> None:
        if self._stopped:
            raise DeviceError("the X connection's thread is stopped: the x11 driver was closed")
        with self._counting:
            self._unfinished += 1
        self._jobs.put(job)

    def try_here(self, what: str, fn: Callable[[], bool]) -> bool:
        """Run ``fn`` on the calling thread, when the X thread is idle with nothing queued.

        For calls that never wait on the X server (a pointer motion is written and flushed,
        nothing read): the hop to the thread and back is two thread wake-ups, most of such a
        call's cost. ``fn`` returns False when it cannot do its work without waiting (then it
        did nothing); so does this, also when the thread is busy or has work queued (running
        here would overtake it): then submit the call with :meth:`call`. Errors come back as
        :mod:`remotehands.errors`, ``what`` naming the action.
        """
        with self._counting:
            if self._unfinished or self._stopped:
                return False
            self._unfinished += 1  # a job submitted meanwhile waits for this one
        try:
            with self._exclusive:
                return fn()
        except RemoteHandsError:
            raise
        except (Xlib.error.XError, Xlib.error.ConnectionClosedError, OSError) as err:
            raise translate_error(err, what) from err
        finally:
            with self._counting:
                self._unfinished -= 1

    def soon(self, what: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the calling task's step is done (``call_soon``): on the event loop
        when the thread is idle then, else as the thread's next job. Nobody waits for it: an
        error is logged (the connection's next call reports a broken connection anyway).

        For work the caller need not wait for, such as writing a motion already queued (the
        thread's own calls write what is queued before theirs, so order is kept either way).
        """
        asyncio.get_running_loop().call_soon(self._run_soon, what, fn)

    def _run_soon(self, what: str, fn: Callable[[], None]) -> None:
        def here() -> bool:
            fn()
            return True

        def job() -> Callable[[], None]:
            try:
                fn()
            except Exception as err:  # noqa: BLE001 -- logged: nobody waits for this job
                logger.warning("%s: %s", what, translate_error(err, what))
            return _nothing

        try:
            if self.try_here(what, here) or self._stopped:
                return
            self._submit(job)
        except RemoteHandsError as err:
            logger.warning("%s: %s", what, err)

    async def call(
        self, what: str, fn: Callable[..., T], *args: Any, timeout_s: float | None = None
    ) -> T:
        """Run ``fn(*args)`` on the thread; errors come back as :mod:`remotehands.errors`.

        ``what`` names the action for error messages.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def job() -> Callable[[], None]:
            try:
                result = fn(*args)
            except BaseException as err:  # noqa: BLE001 -- handed to the caller, the thread lives on
                return functools.partial(_post, loop, answer, None, err)
            return functools.partial(_post, loop, answer, result, None)

        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            self._submit(job)
            async with asyncio.timeout(limit):
                return await answer
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"{what}: the X server did not answer within {limit:g} s"
            ) from err
        except RemoteHandsError:
            raise
        except (Xlib.error.XError, Xlib.error.ConnectionClosedError, ScreenShotError) as err:
            raise translate_error(err, what) from err
        except OSError as err:
            raise translate_error(err, what) from err

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread and wait, from a thread that is not the event loop."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> Callable[[], None]:
            try:
                result = fn(*args)
            except BaseException as err:  # noqa: BLE001 -- handed to the caller, the thread lives on
                return functools.partial(done.set_exception, err)
            return functools.partial(done.set_result, result)

        self._submit(job)
        return done.result()

    def shutdown(self) -> None:
        """Stop the thread once what is queued has run."""
        if not self._stopped:
            self._stopped = True
            self._jobs.put(None)
        self._thread.join()


def _nothing() -> None:
    pass


def _post(
    loop: asyncio.AbstractEventLoop, answer: asyncio.Future[T], result: T | None,
    err: BaseException | None,
) -> None:  # fmt: skip
    # RuntimeError: the loop closed while the call ran, and nobody waits for the answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, answer, result, err)


def _settle(answer: asyncio.Future[T], result: T | None, err: BaseException | None) -> None:
    if answer.done():  # the caller gave up (a timeout, a cancellation)
        return
    if err is not None:
        answer.set_exception(err)
    else:
        answer.set_result(result)  # type: ignore[arg-type]  # None only with an error


class XConnection:
    """A :class:`Display` with an atom cache and checked requests. Use it on one thread only.

    Requests without a reply report their errors asynchronously; the connection collects them
    and :meth:`check` raises the first one after a round trip, so that a failed request fails
    the action that sent it instead of printing to stderr.
    """

    def __init__(self, display: Display) -> None:
        self.display = display
        self.root = display.screen().root
        self._atoms: dict[str, int] = {}
        self._errors: list[Xlib.error.XError] = []
        display.set_error_handler(self._on_error)

    def _on_error(self, err: Xlib.error.XError, request: object) -> None:
        self._errors.append(err)

    def atom(self, name: str) -> int:
        """The atom for ``name``, interned once."""
        atom = self._atoms.get(name)
        if atom is None:
            atom = int(self.display.intern_atom(name))
            self._atoms[name] = atom
        return atom

    def check(self) -> None:
        """Round-trip and raise the first error of the requests sent since the last check."""
        self.display.sync()
        if self._errors:
            first = self._errors[0]
            self._errors.clear()
            raise first

    def discard_errors(self) -> None:
        """Round-trip and forget errors of requests whose failure does not matter."""
        self.display.sync()
        self._errors.clear()

    def root_size(self) -> tuple[int, int]:
        """Width and height of the root window, the virtual desktop."""
        geometry = self.root.get_geometry()
        return int(geometry.width), int(geometry.height)

    def close(self) -> None:
        """Close the connection; errors on the way out do not matter."""
        with contextlib.suppress(Xlib.error.ConnectionClosedError, OSError):  # already gone
            self.display.close()


def property_bytes(value: Any) -> bytes:
    """An X property's value as bytes (python-xlib gives bytes, str or a list of numbers)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    return bytes(value)
