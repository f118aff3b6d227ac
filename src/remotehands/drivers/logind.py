"""Whether systemd-logind holds a graphical session locked: its ``LockedHint``, over D-Bus.

Desktop lockers that follow logind (GNOME's, KDE's, light-locker, xss-lock's) set the session's
``LockedHint`` when they lock; a screen locker that does not is seen on the display itself
(:mod:`remotehands.drivers.x11.desktopstate`). The session is the one whose ``Display`` is the
X display the driver fronts (``:0``), else the session of this process.

:func:`session_locked` answers ``None`` where there is nothing to ask: no system bus (a container,
a machine without systemd), no logind on it, or no session for the display. It never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, Final

from jeepney import DBusAddress, DBusErrorResponse, Message, Properties, new_method_call
from jeepney.io.asyncio import DBusRouter, open_dbus_router
from jeepney.wrappers import unwrap_msg

__all__ = ["LOGIND", "TIMEOUT_S", "session_locked"]

log = logging.getLogger(__name__)

LOGIND: Final = "org.freedesktop.login1"
TIMEOUT_S: Final = 1.0
"""The longest the whole question may take (connect, find the session, read its hint)."""
_MANAGER: Final = DBusAddress(
    "/org/freedesktop/login1", bus_name=LOGIND, interface="org.freedesktop.login1.Manager"
)
_SESSION_INTERFACE: Final = "org.freedesktop.login1.Session"


async def session_locked(display: str | None, bus: str = "SYSTEM") -> bool | None:
    """The ``LockedHint`` of the logind session of X ``display`` (``None``: unknown).

    ``bus`` is ``SYSTEM`` (``DBUS_SYSTEM_BUS_ADDRESS`` or the standard socket) or a D-Bus
    address."""
    if bus == "SYSTEM" and not _system_bus_present():
        return None
    try:
        async with asyncio.timeout(TIMEOUT_S), open_dbus_router(bus) as router:
            path = await _session_path(router, display)
            if path is None:
                return None
            session = DBusAddress(path, bus_name=LOGIND, interface=_SESSION_INTERFACE)
            hint = await _call(router, Properties(session).get("LockedHint"))
            return bool(hint[0][1])
    except (OSError, TimeoutError, DBusErrorResponse, ValueError, IndexError) as err:
        log.debug("logind: no locked hint for display %s: %s", display, err)
        return None


def _system_bus_present() -> bool:
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if address:
        return True
    return os.path.exists("/run/dbus/system_bus_socket")


async def _session_path(router: DBusRouter, display: str | None) -> str | None:
    """The object path of the graphical session on ``display``, else of this process's."""
    sessions = (await _call(router, new_method_call(_MANAGER, "ListSessions")))[0]
    wanted = _display_number(display)
    for _sid, _uid, _user, _seat, path in sessions:
        address = DBusAddress(path, bus_name=LOGIND, interface=_SESSION_INTERFACE)
        shown = (await _call(router, Properties(address).get("Display")))[0][1]
        if wanted is not None and _display_number(str(shown)) == wanted:
            return str(path)
    with contextlib.suppress(DBusErrorResponse):  # not a process of any session
        call = new_method_call(_MANAGER, "GetSessionByPID", "u", (os.getpid(),))
        return str((await _call(router, call))[0])
    return None


def _display_number(display: str | None) -> str | None:
    """``":0"`` of ``":0"``, ``":0.0"`` or ``"localhost:0"``: the server, not the screen."""
    if not display or ":" not in display:
        return None
    number = display.rsplit(":", 1)[1].split(".", 1)[0]
    return f":{number}" if number.isdigit() else None


async def _call(router: DBusRouter, message: Message) -> Any:
    """The body of the reply to ``message``; :class:`DBusErrorResponse` for an error reply."""
    return unwrap_msg(await router.send_and_get_reply(message))
