"""Top-level windows through EWMH (the freedesktop window-manager hints).

The window manager knows which windows are applications' top-level windows, in which order,
and which one is active; it publishes that on the root window (``_NET_CLIENT_LIST_STACKING``,
``_NET_ACTIVE_WINDOW``) and takes requests as client messages (``_NET_ACTIVE_WINDOW``,
``_NET_MOVERESIZE_WINDOW``, ``_NET_CLOSE_WINDOW``). Requests say "source indication 2" (a pager,
acting for the user) so that focus-stealing prevention lets them through.

Without an EWMH window manager the module falls back to the core protocol: mapped top-level
windows from ``QueryTree``, ``SetInputFocus``, ``ConfigureWindow`` and ``WM_DELETE_WINDOW``.

Window ids are the X ids of the client windows (not of the frames the manager wraps them in);
bounds are the outer bounds, frame included, in root pixels. Everything here runs on the
driver's X thread.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil
import Xlib.error
from Xlib import X, Xatom
from Xlib.protocol import event as xevent

from remotehands.drivers.x11.display import XConnection, property_bytes, xid
from remotehands.errors import DeviceError, NotFoundError, ValidationError
from remotehands.protocol.models import Bounds, WindowInfo

__all__ = ["WindowSystem"]

_SOURCE_PAGER = 2  # EWMH source indication: a pager or other tool acting for the user
_NORTH_WEST_GRAVITY = 1  # x, y place the outer frame's top-left corner (ICCCM 4.1.2.3)
_NET_WM_STATE_REMOVE = 0

# Errors that mean "this window went away while we looked at it".
_GONE = (Xlib.error.BadWindow, Xlib.error.BadDrawable, Xlib.error.BadMatch)


class WindowSystem:
    """List, focus, move and close top-level windows of one display."""

    def __init__(self, conn: XConnection) -> None:
        self._conn = conn
        self._root = conn.root
        self._hostname = socket.gethostname()

    # -- reading -------------------------------------------------------------------------

    def supported(self) -> set[int]:
        """Atoms the window manager lists in ``_NET_SUPPORTED`` (empty without one)."""
        return set(self._atoms_of(self._root, "_NET_SUPPORTED"))

    def client_ids(self) -> list[int]:
        """Managed top-level windows, bottom of the stack first."""
        for name in ("_NET_CLIENT_LIST_STACKING", "_NET_CLIENT_LIST"):
            prop = self._root.get_full_property(self._conn.atom(name), Xatom.WINDOW)
            if prop is not None:
                return [int(w) for w in prop.value]
        return self._core_clients()

    def _core_clients(self) -> list[int]:
        wm_state = self._conn.atom("WM_STATE")
        clients: list[int] = []
        for child in self._root.query_tree().children:
            try:
                attrs = child.get_attributes()
                if attrs.override_redirect or attrs.map_state != X.IsViewable:
                    continue
                if child.get_full_property(wm_state, X.AnyPropertyType) is not None:
                    clients.append(int(child.id))
                    continue
                # A reparenting manager without EWMH: the client is inside the frame.
                inner = [
                    int(grandchild.id)
                    for grandchild in child.query_tree().children
                    if grandchild.get_full_property(wm_state, X.AnyPropertyType) is not None
                ]
                clients.extend(inner or [int(child.id)])
            except _GONE:
                continue
        return clients

    def active_id(self, clients: list[int] | None = None) -> int:
        """The focused top-level window, 0 when none is."""
        prop = self._root.get_full_property(self._conn.atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW)
        if prop is not None and len(prop.value):
            return int(prop.value[0])
        clients = self.client_ids() if clients is None else clients
        focus = self._conn.display.get_input_focus().focus
        window = xid(focus)
        # The focus may sit on a child of the client (toolkits focus inner windows).
        while window not in (X.NONE, X.PointerRoot, self._root.id):
            if window in clients:
                return window
            try:
                window = xid(
                    self._conn.display.create_resource_object("window", window).query_tree().parent
                )
            except _GONE:
                return 0
        return 0

    def list_windows(self) -> list[WindowInfo]:
        """Every managed top-level window, bottom first; windows that vanish are skipped."""
        clients = self.client_ids()
        active = self.active_id(clients)
        infos = []
        for window_id in clients:
            try:
                infos.append(self._info(window_id, active))
            except _GONE:
                continue
        return infos

    def info(self, window_id: int) -> WindowInfo:
        """One window; :class:`NotFoundError` when it is not a managed top-level window."""
        self.require(window_id)
        try:
            return self._info(window_id, self.active_id())
        except _GONE as err:
            raise _not_found(window_id) from err

    def require(self, window_id: int) -> Any:
        """The window object for a managed top-level ``window_id``, else NotFoundError."""
        if window_id not in self.client_ids():
            raise _not_found(window_id)
        return self._window(window_id)

    def _window(self, window_id: int) -> Any:
        return self._conn.display.create_resource_object("window", window_id)

    def _info(self, window_id: int, active: int) -> WindowInfo:
        window = self._window(window_id)
        pid = self._pid(window)
        return WindowInfo(
            id=window_id,
            title=self._title(window),
            process_name=self._process_name(window, pid),
            pid=pid,
            bounds=self._bounds(window),
            is_focused=window_id == active,
            is_dialog=self._is_dialog(window),
        )

    def bounds(self, window_id: int) -> Bounds:
        """The outer bounds of a managed window."""
        window = self.require(window_id)
        try:
            return self._bounds(window)
        except _GONE as err:
            raise _not_found(window_id) from err

    def _bounds(self, window: Any) -> Bounds:
        origin = self._root.translate_coords(window, 0, 0)
        geometry = window.get_geometry()
        left, right, top, bottom = self._frame_extents(window)
        return Bounds(
            x=int(origin.x) - left,
            y=int(origin.y) - top,
            width=int(geometry.width) + left + right,
            height=int(geometry.height) + top + bottom,
        )

    def _frame_extents(self, window: Any) -> tuple[int, int, int, int]:
        prop = window.get_full_property(self._conn.atom("_NET_FRAME_EXTENTS"), Xatom.CARDINAL)
        if prop is None or len(prop.value) != 4:
            return 0, 0, 0, 0
        left, right, top, bottom = (int(v) for v in prop.value)
        return left, right, top, bottom

    def _title(self, window: Any) -> str:
        prop = window.get_full_property(
            self._conn.atom("_NET_WM_NAME"), self._conn.atom("UTF8_STRING")
        )
        if prop is not None:
            return property_bytes(prop.value).decode("utf-8", "replace")
        prop = window.get_full_property(Xatom.WM_NAME, X.AnyPropertyType)
        if prop is None:
            return ""
        raw = property_bytes(prop.value)
        if int(prop.property_type) == Xatom.STRING:
            return raw.decode("latin-1")
        return raw.decode("utf-8", "replace")  # UTF8_STRING, or COMPOUND_TEXT read loosely

    def _pid(self, window: Any) -> int | None:
        prop = window.get_full_property(self._conn.atom("_NET_WM_PID"), Xatom.CARDINAL)
        if prop is None or not len(prop.value):
            return None
        return int(prop.value[0])

    def _process_name(self, window: Any, pid: int | None) -> str | None:
        if pid is None:
            return None
        machine = window.get_full_property(Xatom.WM_CLIENT_MACHINE, X.AnyPropertyType)
        if machine is not None:
            host = property_bytes(machine.value).decode("latin-1")
            if host and host != self._hostname:
                return None  # the pid belongs to another machine's process table
        try:
            return str(psutil.Process(pid).name())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def _is_dialog(self, window: Any) -> bool:
        types = self._atoms_of(window, "_NET_WM_WINDOW_TYPE")
        if self._conn.atom("_NET_WM_WINDOW_TYPE_DIALOG") in types:
            return True
        if self._conn.atom("_NET_WM_STATE_MODAL") in self._atoms_of(window, "_NET_WM_STATE"):
            return True
        return window.get_full_property(Xatom.WM_TRANSIENT_FOR, Xatom.WINDOW) is not None

    def _atoms_of(self, window: Any, name: str) -> list[int]:
        prop = window.get_full_property(self._conn.atom(name), Xatom.ATOM)
        return [] if prop is None else [int(a) for a in prop.value]

    # -- requests ------------------------------------------------------------------------

    def request_focus(self, window_id: int) -> None:
        """Ask the window manager to activate (raise and focus) a window."""
        window = self.require(window_id)
        if self._conn.atom("_NET_ACTIVE_WINDOW") in self.supported():
            current = self.active_id()
            self._message(window, "_NET_ACTIVE_WINDOW", [_SOURCE_PAGER, X.CurrentTime, current])
            self._conn.check()
        else:
            self.force_focus(window_id)

    def force_focus(self, window_id: int) -> None:
        """Raise a window and give it the input focus without asking the window manager."""
        window = self.require(window_id)
        window.configure(stack_mode=X.Above)
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        try:
            self._conn.check()
        except Xlib.error.BadMatch as err:
            raise DeviceError(
                f"window {window_id:#x} cannot take the focus: it is not visible (minimized or "
                "on another desktop?)"
            ) from err

    def request_move(self, window_id: int, bounds: Bounds) -> None:
        """Ask for new outer bounds; the window manager (or the client) has the last word."""
        window = self.require(window_id)
        left, right, top, bottom = self._frame_extents(window)
        width = bounds.width - left - right
        height = bounds.height - top - bottom
        if width <= 0 or height <= 0:
            raise ValidationError(
                f"bounds {bounds.width}x{bounds.height} leave no room inside the window's frame "
                f"({left + right}x{top + bottom} of decorations)"
            )
        supported = self.supported()
        if self._conn.atom("_NET_MOVERESIZE_WINDOW") not in supported:
            window.configure(x=bounds.x + left, y=bounds.y + top, width=width, height=height)
            self._conn.check()
            return
        # A maximized or full-screen window ignores geometry requests; leave those states.
        states = self._atoms_of(window, "_NET_WM_STATE")
        blocking = [
            self._conn.atom(name)
            for name in (
                "_NET_WM_STATE_MAXIMIZED_VERT",
                "_NET_WM_STATE_MAXIMIZED_HORZ",
                "_NET_WM_STATE_FULLSCREEN",
            )
            if self._conn.atom(name) in states
        ]
        for index in range(0, len(blocking), 2):
            pair = [*blocking[index : index + 2], 0]
            self._message(
                window, "_NET_WM_STATE", [_NET_WM_STATE_REMOVE, pair[0], pair[1], _SOURCE_PAGER]
            )
        flags = _NORTH_WEST_GRAVITY | (0b1111 << 8) | (_SOURCE_PAGER << 12)
        self._message(window, "_NET_MOVERESIZE_WINDOW", [flags, bounds.x, bounds.y, width, height])
        self._conn.check()

    def request_close(self, window_id: int) -> None:
        """Ask a window to close, as its close button would."""
        window = self.require(window_id)
        if self._conn.atom("_NET_CLOSE_WINDOW") in self.supported():
            self._message(window, "_NET_CLOSE_WINDOW", [X.CurrentTime, _SOURCE_PAGER])
        elif self._conn.atom("WM_DELETE_WINDOW") in self._protocols(window):
            message = xevent.ClientMessage(
                window=window,
                client_type=self._conn.atom("WM_PROTOCOLS"),
                data=(32, [self._conn.atom("WM_DELETE_WINDOW"), X.CurrentTime, 0, 0, 0]),
            )
            window.send_event(message, event_mask=0)
        else:
            window.kill_client()  # what a window manager does for clients that cannot be asked
        self._conn.check()

    def _protocols(self, window: Any) -> list[int]:
        prop = window.get_full_property(self._conn.atom("WM_PROTOCOLS"), Xatom.ATOM)
        return [] if prop is None else [int(a) for a in prop.value]

    def _message(self, window: Any, name: str, data: list[int]) -> None:
        padded = (data + [0] * 5)[:5]
        message = xevent.ClientMessage(
            window=window, client_type=self._conn.atom(name), data=(32, padded)
        )
        self._root.send_event(
            message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask
        )


def _not_found(window_id: int) -> NotFoundError:
    return NotFoundError(
        f"no top-level window {window_id} ({window_id:#x}): list the windows for current ids"
    )
