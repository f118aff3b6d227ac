"""A stand-in for systemd-logind on a private D-Bus (a real ``dbus-daemon``), for the tests of
:mod:`remotehands.drivers.logind`: one graphical session on a given X display whose
``LockedHint`` follows the lines ``lock`` and ``unlock`` read from stdin.

    python tests/doubles/logind.py BUS_ADDRESS DISPLAY

Serves ``Manager.ListSessions``, ``Manager.GetSessionByPID`` (no session: an error, as logind
answers for a process outside every session) and ``Properties.Get`` of the session's
``Display`` and ``LockedHint``. Prints ``ready`` once it owns ``org.freedesktop.login1``, and
``locked`` / ``unlocked`` after each change.
"""

from __future__ import annotations

import sys
import threading

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

LOGIND = "org.freedesktop.login1"
SESSION = "/org/freedesktop/login1/session/c1"


def main() -> None:
    address, display = sys.argv[1], sys.argv[2]
    locked = threading.Event()
    conn = open_dbus_connection(bus=address)
    conn.send_and_get_reply(message_bus.RequestName(LOGIND), timeout=5)
    print("ready", flush=True)

    def follow_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "lock":
                locked.set()
            elif line.strip() == "unlock":
                locked.clear()
            print("locked" if locked.is_set() else "unlocked", flush=True)

    threading.Thread(target=follow_stdin, daemon=True).start()
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        fields = msg.header.fields
        member = fields.get(HeaderFields.member)
        path = fields.get(HeaderFields.path)
        if member == "ListSessions":
            sessions = [("c1", 1000, "alice", "seat0", SESSION)]
            conn.send(new_method_return(msg, "a(susso)", (sessions,)))
        elif member == "GetSessionByPID":
            conn.send(new_error(msg, "org.freedesktop.login1.NoSessionForPID", "s",
                                ("PID does not belong to any known session",)))  # fmt: skip
        elif member == "Get" and path == SESSION:
            name = msg.body[1]
            if name == "Display":
                conn.send(new_method_return(msg, "v", (("s", display),)))
            elif name == "LockedHint":
                conn.send(new_method_return(msg, "v", (("b", locked.is_set()),)))
            else:
                conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty"))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


if __name__ == "__main__":
    main()
