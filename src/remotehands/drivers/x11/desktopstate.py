"""What an X display shows: a display manager's greeter, a screen locker, or the desktop.

The Openctrol face's health reports ``login_screen``, ``locked`` or ``desktop``; on X11 this
module tells them apart from what the X server itself shows, on the driver's X thread:

- **a greeter** (``login_screen``): a mapped top-level window of a display manager's greeter
  (LightDM's GTK, slick, webkit and Unity greeters, GDM's, SDDM's), known by its ``WM_CLASS`` or
  by the program behind its ``_NET_WM_PID``;
- **a known locker** (``locked``): a mapped window of i3lock, xscreensaver (its lock dialog or
  saver window), xsecurelock, light-locker, slock, xlock, xtrlock or a desktop's screensaver,
  the same way;
- **an unnamed locker** (``locked``): the keyboard *and* the pointer grabbed by another client
  while it has a mapped override-redirect window that covers the whole screen or takes input
  only (what lockers do; xtrlock's is a 1x1 input-only window). Whether another client holds a
  grab is seen by asking for it ourselves: refused means held; granted, it is let go at once
  (the focused window sees a focus-out and focus-in with the grab mode, as when a menu opens).
  An open menu grabs too, but its window is neither full-screen nor input-only.

Anything else is ``desktop``. What X cannot show is left to other sources: logind's
``LockedHint`` where a system bus has logind.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Final, Literal

import Xlib.error
from Xlib import X
from Xlib.xobject.drawable import Window

from remotehands.drivers.x11.display import XConnection

__all__ = ["GREETERS", "LOCKERS", "DesktopState", "read_desktop_state"]

DesktopState = Literal["login_screen", "locked", "desktop"]

GREETERS: Final = frozenset({
    "lightdm-gtk-greeter", "slick-greeter", "lightdm-webkit2-greeter", "unity-greeter",
    "lightdm-slick-greeter", "pantheon-greeter", "io.elementary.greeter", "sddm-greeter",
    "sddm-greeter-qt6", "gdm-greeter", "gnome-shell-greeter", "lxdm-greeter-gtk",
    "arctica-greeter", "nody-greeter", "web-greeter",
})  # fmt: skip
"""Names (``WM_CLASS`` instance or class, or program name, lower case) of greeters."""

LOCKERS: Final = frozenset({
    "i3lock", "xscreensaver", "xscreensaver-auth", "xscreensaver-gfx", "xsecurelock",
    "light-locker", "slock", "xlock", "xtrlock", "gnome-screensaver", "mate-screensaver",
    "cinnamon-screensaver", "xfce4-screensaver", "kscreenlocker_greet", "physlock", "swaylock",
    "betterlockscreen", "xautolock-locker",
})  # fmt: skip
"""Names (``WM_CLASS`` instance or class, or program name, lower case) of screen lockers."""

_GRAB_REFUSED: Final = (X.AlreadyGrabbed, X.GrabFrozen)


def read_desktop_state(conn: XConnection) -> DesktopState:
    """What the display shows (see the module docstring). Runs on the connection's thread."""
    covering = False
    for name, covers in _mapped_top_levels(conn):
        if name in GREETERS:
            return "login_screen"
        if name in LOCKERS:
            return "locked"
        covering = covering or covers
    if covering and _grabbed_by_another(conn):
        return "locked"
    return "desktop"


def _mapped_top_levels(conn: XConnection) -> list[tuple[str, bool]]:
    """``(name, covers)`` of each mapped child of the root, top first: ``name`` is the first
    known name among its ``WM_CLASS`` and its program, else its ``WM_CLASS`` instance;
    ``covers`` whether it is an override-redirect window over the whole screen or for input
    only."""
    found: list[tuple[str, bool]] = []
    pid_atom = conn.atom("_NET_WM_PID")
    size = conn.root_size()
    for window in reversed(conn.root.query_tree().children):
        # A window may go between the listing and the question: skip it.
        with contextlib.suppress(Xlib.error.XError):
            attributes = window.get_attributes()
            if attributes.map_state != X.IsViewable:
                continue
            names = [n.lower() for n in (window.get_wm_class() or ())]
            pid = window.get_full_property(pid_atom, X.AnyPropertyType)
            if pid is not None and len(pid.value) > 0:
                names.append(_program(int(pid.value[0])))
            known = [n for n in names if n in GREETERS or n in LOCKERS]
            covers = bool(attributes.override_redirect) and (
                attributes.win_class == X.InputOnly or _covers(window, size)
            )
            found.append((known[0] if known else (names[0] if names else ""), covers))
    conn.discard_errors()
    return found


def _program(pid: int) -> str:
    """The program name of a local process (``/proc/PID/comm``), or ``""``."""
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip().lower()
    except OSError:  # gone, or another machine's process (a remote X client)
        return ""


def _covers(window: Window, size: tuple[int, int]) -> bool:
    geometry = window.get_geometry()
    return bool(
        geometry.x <= 0
        and geometry.y <= 0
        and geometry.x + geometry.width >= size[0]
        and geometry.y + geometry.height >= size[1]
    )


def _grabbed_by_another(conn: XConnection) -> bool:
    """Whether another client holds both the keyboard and the pointer grab."""
    root = conn.root
    keyboard = root.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
    if keyboard == X.GrabSuccess:
        conn.display.ungrab_keyboard(X.CurrentTime)
        conn.display.sync()
        return False
    pointer = root.grab_pointer(
        False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime
    )
    if pointer == X.GrabSuccess:
        conn.display.ungrab_pointer(X.CurrentTime)
        conn.display.sync()
        return False
    return keyboard in _GRAB_REFUSED and pointer in _GRAB_REFUSED
