"""The X ``CLIPBOARD`` selection, served and read in-process.

X has no clipboard storage: the client that owns a selection keeps the data and sends it to
each reader on request. :class:`ClipboardService` is such a client. It has its own X connection
and its own thread, which waits on that connection and on a wake-up pipe, so it can answer
``SelectionRequest`` events at any time, whatever the driver's X thread is doing.

- Owning: ``set_text`` takes ownership with a real server timestamp (ICCCM forbids
  ``CurrentTime`` for this) and answers ``TARGETS``, ``TIMESTAMP``, ``UTF8_STRING``,
  ``text/plain;charset=utf-8``, ``TEXT`` and ``STRING`` (Latin-1, ``?`` for the rest). Text
  larger than one request goes out with the ``INCR`` protocol.
- Reading: ``get_text`` asks the server who owns the selection. When we do, it answers our own
  text, without converting the selection; otherwise it converts the selection to
  ``UTF8_STRING`` (then ``STRING``) on our window and waits for the owner's answer, following
  ``INCR``, with a deadline.

When this service stops (the driver closes) the text it owned is gone, as with any X client.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import Xlib.error
from Xlib import X, Xatom
from Xlib.display import Display
from Xlib.protocol import event as xevent

from remotehands.drivers.x11.display import open_display, property_bytes, xid
from remotehands.errors import DeviceError, DeviceTimeoutError

__all__ = ["MAX_READ_BYTES", "ClipboardService"]

MAX_READ_BYTES = 64 * 1024 * 1024
"""The largest clipboard text ``get_text`` accepts from another client."""

_TRANSFER_IDLE_S = 10.0  # an INCR transfer a requestor stopped reading is dropped after this


@dataclass
class _Read:
    future: Future[str]
    targets: list[int]
    deadline: float
    incr: bool = False
    incr_type: int = 0
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass
class _Transfer:
    requestor: Any
    property: int
    type: int
    data: bytes
    offset: int = 0
    deadline: float = 0.0


class ClipboardService:
    """Owner and reader of one X selection (``CLIPBOARD`` by default), on its own thread.

    Thread-safe: ``set_text`` and ``get_text`` may be called from any thread and answer
    futures that the service's thread completes.
    """

    def __init__(self, display: str, selection: str = "CLIPBOARD", timeout_s: float = 2.0) -> None:
        self._display_name = display
        self._selection_name = selection
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._owned: str | None = None  # our text while we own the selection
        self._commands: queue.SimpleQueue[tuple[str, Any, Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._started: Future[None] = Future()
        self._stopped = threading.Event()

    # -- public, any thread --------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the thread; raises what connecting raised."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"x11-clipboard-{self._display_name}", daemon=True
        )
        self._thread.start()
        self._started.result(timeout=30)

    @property
    def owned_text(self) -> str | None:
        """Our text while we own the selection, else None."""
        with self._lock:
            return self._owned

    def set_text(self, text: str) -> Future[None]:
        """Own the selection with ``text``; the future completes once we own it."""
        return self._submit("set", text)

    def get_text(self) -> Future[str]:
        """The selection's text; ``""`` when nobody owns it or the owner has no text."""
        return self._submit("get", None)

    def close(self) -> None:
        """Stop the thread and close its connection; safe to call twice."""
        if self._thread is not None and self._thread.is_alive():
            self._commands.put(("stop", None, Future()))
            self._wake()
            self._thread.join(timeout=5)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _submit(self, kind: str, arg: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if self._thread is None or not self._thread.is_alive() or self._stopped.is_set():
            _settle(future, error=DeviceError("the clipboard service is not running"))
            return future
        self._commands.put((kind, arg, future))
        self._wake()
        return future

    def _wake(self) -> None:
        # Closed: the thread is gone, and the caller learns that from its future.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # -- the service thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open()
        except BaseException as err:  # noqa: BLE001 - handed to the thread that called start()
            self._started.set_exception(err)
            self._stopped.set()
            return
        self._started.set_result(None)
        try:
            self._loop()
        except (Xlib.error.ConnectionClosedError, OSError) as err:
            self._fail_all(DeviceError(f"the clipboard's X connection failed: {err}"))
        finally:
            self._stopped.set()
            with self._lock:
                self._owned = None
            with contextlib.suppress(Xlib.error.ConnectionClosedError, OSError):
                self._d.close()

    def _open(self) -> None:
        d: Display = open_display(self._display_name)
        self._d = d
        d.set_error_handler(self._on_error)
        self._atoms = {
            name: int(d.intern_atom(name))
            for name in (
                self._selection_name,
                "TARGETS",
                "TIMESTAMP",
                "MULTIPLE",
                "UTF8_STRING",
                "TEXT",
                "INCR",
                "text/plain;charset=utf-8",
                "_REMOTEHANDS_SELECTION",
                "_REMOTEHANDS_TIMESTAMP",
            )
        }
        self._sel = self._atoms[self._selection_name]
        self._window = d.screen().root.create_window(
            -10, -10, 1, 1, 0, X.CopyFromParent, event_mask=X.PropertyChangeMask
        )
        self._window.set_wm_name("remotehands clipboard")
        # Without BIG-REQUESTS one request carries at most this much property data.
        self._chunk = min(int(d.display.info.max_request_length) * 4 - 1024, 256 * 1024)
        self._acquired_at = 0
        self._pending_sets: deque[tuple[str, Future[None]]] = deque()
        self._reads: deque[Future[str]] = deque()
        self._read: _Read | None = None
        self._transfers: dict[tuple[int, int], _Transfer] = {}
        d.sync()

    def _on_error(self, err: Xlib.error.XError, request: object) -> None:
        # Requestors may vanish mid-answer; their BadWindow errors concern nobody.
        pass

    def _loop(self) -> None:
        d = self._d
        while True:
            while d.pending_events():
                event = d.next_event()
                # A requestor window may vanish while we answer it; that concerns nobody.
                with contextlib.suppress(Xlib.error.XError):
                    self._handle(event)
            if not self._run_commands():
                return
            self._expire(time.monotonic())
            # Flushing may read events into python-xlib's queue, where select cannot see them.
            d.flush()
            if d.pending_events():
                continue
            readable, _, _ = select.select([d.fileno(), self._wake_r], [], [], self._next_wait())
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)

    def _next_wait(self) -> float | None:
        deadlines = [t.deadline for t in self._transfers.values()]
        if self._read is not None:
            deadlines.append(self._read.deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _run_commands(self) -> bool:
        while True:
            try:
                kind, arg, future = self._commands.get_nowait()
            except queue.Empty:
                return True
            if kind == "stop":
                self._fail_all(DeviceError("the clipboard service stopped"))
                _settle(future)
                return False
            if kind == "set":
                self._begin_set(arg, future)
            elif kind == "get":
                self._reads.append(future)
                self._next_read()

    def _fail_all(self, err: Exception) -> None:
        futures: list[Future[Any]] = [f for _, f in self._pending_sets] + list(self._reads)
        if self._read is not None:
            futures.append(self._read.future)
        while True:
            try:
                futures.append(self._commands.get_nowait()[2])
            except queue.Empty:
                break
        for future in futures:
            _settle(future, error=err)
        self._pending_sets.clear()
        self._reads.clear()
        self._read = None

    # -- owning --------------------------------------------------------------------------

    def _begin_set(self, text: str, future: Future[None]) -> None:
        # Appending nothing to a property of our window makes the server send a
        # PropertyNotify carrying its current time: the timestamp to take ownership with.
        self._pending_sets.append((text, future))
        self._window.change_property(
            self._atoms["_REMOTEHANDS_TIMESTAMP"], Xatom.INTEGER, 8, b"", X.PropModeAppend
        )

    def _finish_set(self, timestamp: int) -> None:
        text, future = self._pending_sets.popleft()
        if future.done():
            return  # the caller gave up waiting; taking the clipboard now would surprise it
        self._window.set_selection_owner(self._sel, timestamp)
        if xid(self._d.get_selection_owner(self._sel)) != self._window.id:
            _settle(future, error=DeviceError("another X client took the clipboard at once"))
            return
        self._acquired_at = timestamp
        with self._lock:
            self._owned = text
        _settle(future)

    def _answer(self, ev: xevent.SelectionRequest) -> None:
        requestor = ev.requestor
        prop = int(ev.property) or int(ev.target)  # obsolete clients give no property
        target = int(ev.target)
        text = self.owned_text
        data: bytes | None = None
        prop_type = 0
        refused = (
            text is None
            or int(ev.selection) != self._sel
            or (int(ev.time) != X.CurrentTime and int(ev.time) < self._acquired_at)
        )
        if not refused and text is not None:
            a = self._atoms
            if target == a["TARGETS"]:
                targets = [
                    a["TARGETS"],
                    a["TIMESTAMP"],
                    a["UTF8_STRING"],
                    a["text/plain;charset=utf-8"],
                    a["TEXT"],
                    Xatom.STRING,
                ]
                requestor.change_property(prop, Xatom.ATOM, 32, targets)
            elif target == a["TIMESTAMP"]:
                requestor.change_property(prop, Xatom.INTEGER, 32, [self._acquired_at])
            elif target in (a["UTF8_STRING"], a["TEXT"]):
                data, prop_type = text.encode("utf-8"), a["UTF8_STRING"]
            elif target == a["text/plain;charset=utf-8"]:
                data, prop_type = text.encode("utf-8"), target
            elif target == Xatom.STRING:
                data, prop_type = text.encode("latin-1", "replace"), Xatom.STRING
            else:
                refused = True
        if data is not None:
            if len(data) > self._chunk:
                self._begin_transfer(requestor, prop, prop_type, data)
            else:
                requestor.change_property(prop, prop_type, 8, data)
        notify = xevent.SelectionNotify(
            time=ev.time,
            requestor=requestor,
            selection=ev.selection,
            target=ev.target,
            property=X.NONE if refused else prop,
        )
        requestor.send_event(notify, event_mask=0)

    def _begin_transfer(self, requestor: Any, prop: int, prop_type: int, data: bytes) -> None:
        requestor.change_attributes(event_mask=X.PropertyChangeMask)
        requestor.change_property(prop, self._atoms["INCR"], 32, [len(data)])
        self._transfers[(xid(requestor), prop)] = _Transfer(
            requestor, prop, prop_type, data, deadline=time.monotonic() + _TRANSFER_IDLE_S
        )

    def _continue_transfer(self, transfer: _Transfer) -> None:
        chunk = transfer.data[transfer.offset : transfer.offset + self._chunk]
        transfer.requestor.change_property(transfer.property, transfer.type, 8, chunk)
        transfer.offset += len(chunk)
        transfer.deadline = time.monotonic() + _TRANSFER_IDLE_S
        if not chunk:  # the zero-length chunk that ends the transfer has gone out
            self._end_transfer(transfer)

    def _end_transfer(self, transfer: _Transfer) -> None:
        key = (xid(transfer.requestor), transfer.property)
        self._transfers.pop(key, None)
        if not any(k[0] == key[0] for k in self._transfers):
            transfer.requestor.change_attributes(event_mask=0)

    # -- reading -------------------------------------------------------------------------

    def _next_read(self) -> None:
        while self._read is None and self._reads:
            future = self._reads.popleft()
            if future.done():
                continue  # the caller gave up waiting
            # Ask the server who owns the selection: our own SelectionClear may still be
            # unread, so what we last owned is no proof that we still own it.
            owner = xid(self._d.get_selection_owner(self._sel))
            if owner == self._window.id:
                _settle(future, self.owned_text or "")  # ours: no conversion round trip
                continue
            if owner == X.NONE:
                _settle(future, "")
                continue
            self._read = _Read(
                future,
                [self._atoms["UTF8_STRING"], Xatom.STRING],
                time.monotonic() + self.timeout_s,
            )
            self._convert()

    def _convert(self) -> None:
        assert self._read is not None
        self._window.convert_selection(
            self._sel, self._read.targets[0], self._atoms["_REMOTEHANDS_SELECTION"], X.CurrentTime
        )

    def _finish_read(self, text: str | None = None, error: Exception | None = None) -> None:
        read, self._read = self._read, None
        if read is not None:
            _settle(read.future, text or "", error)
        self._window.delete_property(self._atoms["_REMOTEHANDS_SELECTION"])
        self._next_read()

    def _on_selection_notify(self, ev: xevent.SelectionNotify) -> None:
        read = self._read
        if read is None or int(ev.selection) != self._sel:
            return
        if int(ev.property) == X.NONE:
            read.targets.pop(0)
            if read.targets:
                self._convert()
            else:
                self._finish_read("")
            return
        prop = self._window.get_full_property(
            self._atoms["_REMOTEHANDS_SELECTION"], X.AnyPropertyType
        )
        if prop is None:
            self._finish_read("")
            return
        if int(prop.property_type) == self._atoms["INCR"]:
            # Deleting the property tells the owner to send the first chunk.
            read.incr = True
            read.deadline = time.monotonic() + self.timeout_s
            self._window.delete_property(self._atoms["_REMOTEHANDS_SELECTION"])
            return
        self._finish_read(self._decode(int(prop.property_type), property_bytes(prop.value)))

    def _on_incr_chunk(self) -> None:
        read = self._read
        assert read is not None
        prop = self._window.get_full_property(
            self._atoms["_REMOTEHANDS_SELECTION"], X.AnyPropertyType
        )
        self._window.delete_property(self._atoms["_REMOTEHANDS_SELECTION"])
        if prop is None:
            return
        chunk = property_bytes(prop.value)
        read.incr_type = int(prop.property_type)
        read.deadline = time.monotonic() + self.timeout_s
        if not chunk:
            self._finish_read(self._decode(read.incr_type, b"".join(read.chunks)))
            return
        read.size += len(chunk)
        if read.size > MAX_READ_BYTES:
            self._finish_read(
                error=DeviceError(
                    f"the clipboard holds more than {MAX_READ_BYTES // (1024 * 1024)} MiB of text"
                )
            )
            return
        read.chunks.append(chunk)

    def _decode(self, prop_type: int, data: bytes) -> str:
        if prop_type == Xatom.STRING:
            return data.decode("latin-1")
        return data.decode("utf-8", "replace")

    # -- events and deadlines ------------------------------------------------------------

    def _handle(self, ev: Any) -> None:
        if isinstance(ev, xevent.SelectionRequest):
            self._answer(ev)
        elif isinstance(ev, xevent.SelectionClear):
            if int(ev.atom) == self._sel:
                with self._lock:
                    self._owned = None
        elif isinstance(ev, xevent.SelectionNotify):
            self._on_selection_notify(ev)
        elif isinstance(ev, xevent.PropertyNotify):
            self._on_property(ev)

    def _on_property(self, ev: xevent.PropertyNotify) -> None:
        window, atom = xid(ev.window), int(ev.atom)
        if window == self._window.id:
            if atom == self._atoms["_REMOTEHANDS_TIMESTAMP"] and self._pending_sets:
                self._finish_set(int(ev.time))
            elif (
                atom == self._atoms["_REMOTEHANDS_SELECTION"]
                and ev.state == X.PropertyNewValue
                and self._read is not None
                and self._read.incr
            ):
                self._on_incr_chunk()
            return
        transfer = self._transfers.get((window, atom))
        if transfer is not None and ev.state == X.PropertyDelete:
            self._continue_transfer(transfer)

    def _expire(self, now: float) -> None:
        for transfer in [t for t in self._transfers.values() if t.deadline <= now]:
            self._end_transfer(transfer)
        if self._read is not None and self._read.deadline <= now:
            owner = xid(self._d.get_selection_owner(self._sel))
            self._finish_read(
                error=DeviceTimeoutError(
                    f"the clipboard owner (X window {owner:#x}) did not answer within "
                    f"{self.timeout_s:g} s"
                )
            )


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Complete ``future`` unless its waiter gave up (cancelled it) already."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
