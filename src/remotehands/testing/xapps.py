"""Real X clients for tests: windows in a subprocess that report what they receive.

Each helper starts ``python -m remotehands.testing.xapps KIND ...``, a small Tk program, on the
display named by ``DISPLAY``/``XAUTHORITY`` (of ``os.environ``, updated with ``env``), and talks
to it over pipes: the program writes one JSON object per line on stdout for every event, and
reads commands, one JSON object per line, on stdin. The helpers return once the window is mapped
and managed, with its X id (``window_id``, the client window the window manager lists) and its
pid (``pid``, also published as ``_NET_WM_PID``, which Tk does not set by itself).

- :func:`launch_probe` — a window holding a Tk ``Text`` widget with the keyboard focus; it
  reports every key press and release, button press and release, motion, wheel notch and double
  click, and answers the text typed so far. Events::

      {"event": "key_press" | "key_release", "keysym": "a", "char": "a", "keycode": 38,
       "state": 0}
      {"event": "button_press" | "button_release", "button": 1, "x": 10, "y": 20,
       "root_x": 110, "root_y": 140, "state": 0}
      {"event": "motion", "x": 10, "y": 20, "root_x": 110, "root_y": 140, "state": 256}
      {"event": "double_click", "button": 1, "root_x": 110, "root_y": 140}
      {"event": "wheel", "axis": "vertical" | "horizontal", "direction": 1 | -1,
       "root_x": 110, "root_y": 140}
      {"event": "focus_in" | "focus_out"}

  ``x``/``y`` are relative to the Text widget, ``root_x``/``root_y`` are desktop pixels.
  Wheel ``direction`` 1 is down (or right). Tk 8.6 delivers X buttons 6/7 as Shift+4/5, so the
  probe reports a notch with Shift held as horizontal: do not hold Shift while scrolling.
- :func:`launch_dialog` — a main window and a dialog transient for it (``_NET_WM_WINDOW_TYPE``
  ``_DIALOG``); ``window_id`` is the main window, ``dialog_id`` the dialog.
- :func:`launch_color_window` — a window painted one solid colour (or four coloured
  quadrants), which can change colour or animate on command: for screenshot pixel checks and
  wait-for-stable/changed tests. Every repaint reports ``{"event": "painted", "color": ...}``.

All helpers are context managers and close their program (and reap it) on exit. Waiting is by
condition with a deadline: :meth:`XApp.wait_for` and :func:`wait_until` (blocking), their async
twins :meth:`XApp.wait_for_async` and :func:`eventually` (for async tests: they keep the event
loop running), never fixed sleeps.

Every helper answers :meth:`XApp.client_area` (the inside of its main window, in desktop
pixels, asked of the program at call time) and :meth:`XApp.center`, to aim clicks and pixel
checks without guessing the window manager's decorations.

Example (an async test)::

    with launch_probe("probe", x=100, y=100) as probe:
        await driver.focus_window(probe.window_id)
        await probe.wait_for_async("focus_in")
        await driver.type("héllo")
        await eventually(lambda: probe.text() == "héllo")
        await driver.move(*probe.center())
        await driver.click("left")
        press = await probe.wait_for_async("button_press")
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast, overload

__all__ = [
    "ColorWindow",
    "DialogApp",
    "Event",
    "Probe",
    "XApp",
    "eventually",
    "launch_color_window",
    "launch_dialog",
    "launch_probe",
    "wait_until",
]

Event = dict[str, Any]
"""One event a test program reported (a decoded JSON object; ``event`` names its kind)."""

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0


def wait_until(
    condition: Callable[[], T], timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.01
) -> T:
    """Call ``condition`` until it returns something truthy and return that; raise
    ``TimeoutError`` (with the last value) when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout:g} s (last value: {value!r})")
        time.sleep(interval)


@overload
async def eventually(
    condition: Callable[[], Awaitable[T]],
    timeout: float = ...,  # noqa: ASYNC109 - a polling deadline, like wait_until's
    interval: float = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T],
    timeout: float = ...,  # noqa: ASYNC109 - a polling deadline, like wait_until's
    interval: float = ...,
) -> T: ...


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - a polling deadline, like wait_until's
    interval: float = 0.01,
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; raise
    ``TimeoutError`` (with the last value) when ``timeout`` seconds pass first.

    ``condition`` may be a coroutine function (awaited on the loop) or a plain function (run on
    a worker thread, so that a blocking check such as :meth:`Probe.text` leaves the event loop,
    and the tasks of the code under test, running).
    """
    deadline = time.monotonic() + timeout
    while True:
        check: Callable[[], Any] = condition
        if inspect.iscoroutinefunction(check):
            value = check()
        else:
            value = await asyncio.to_thread(check)
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout:g} s (last value: {value!r})")
        await asyncio.sleep(interval)


class XApp:
    """A test program running in a subprocess, with the events it has reported.

    Events are kept in arrival order; :meth:`mark` answers the index of the next one, so that
    ``wait_for(..., since=mark)`` ignores what happened before an action.

    Prefer the ``launch_*`` functions. ``kind`` and ``args`` are the program's command line,
    ``env`` what to change in ``os.environ`` for it (``DISPLAY``, ``XAUTHORITY``), ``timeout``
    how long to wait for its window: ``TimeoutError`` (or ``RuntimeError`` when the program
    exits first, with its stderr) if it does not come.
    """

    def __init__(
        self,
        kind: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        child_env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remotehands.testing.xapps", kind, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.pid: int = self.proc.pid
        """The program's pid (published on its windows as ``_NET_WM_PID``)."""
        self._events: list[Event] = []
        self._stderr: list[str] = []
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            ready = self.wait_for("ready", timeout=timeout)
        except BaseException:
            self.close()
            raise
        self.window_id: int = int(ready["window"])
        """The X id of the program's (main) top-level client window."""
        self.title: str = str(ready["title"])
        self.ready: Event = ready
        """The program's ``ready`` event."""

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "output", "line": line.rstrip("\n")}
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._events.append({"event": "exit"})
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """What the program wrote on stderr so far."""
        return "".join(self._stderr)

    def events(self, kind: str | None = None, since: int = 0) -> list[Event]:
        """Events reported so far (of ``kind`` only, when given), from index ``since``."""
        with self._cond:
            events = self._events[since:]
        return [e for e in events if kind is None or e.get("event") == kind]

    def mark(self) -> int:
        """The index the next event will have."""
        with self._cond:
            return len(self._events)

    def wait_for(
        self,
        match: str | Callable[[Event], bool],
        timeout: float = DEFAULT_TIMEOUT_S,
        since: int = 0,
    ) -> Event:
        """The first event from index ``since`` that ``match`` accepts (an event kind, or a
        predicate), waiting up to ``timeout`` seconds for it."""
        accept = match if callable(match) else (lambda e: e.get("event") == match)
        deadline = time.monotonic() + timeout
        with self._cond:
            index = since
            while True:
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if accept(event):
                        return event
                    if event.get("event") == "exit":
                        raise RuntimeError(
                            f"the test program exited (status {self.proc.poll()}) before the "
                            f"awaited event; its stderr:\n{self.stderr}"
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching event within {timeout:g} s; events since {since}: "
                        f"{self._events[since:][-20:]}; stderr:\n{self.stderr}"
                    )
                self._cond.wait(remaining)

    async def wait_for_async(
        self,
        match: str | Callable[[Event], bool],
        timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - passed on to wait_for
        since: int = 0,
    ) -> Event:
        """:meth:`wait_for` on a worker thread, for async tests."""
        return await asyncio.to_thread(self.wait_for, match, timeout, since)

    def send(self, command: str, **fields: Any) -> None:
        """Send a command to the program."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": command, **fields}) + "\n")
        self.proc.stdin.flush()

    def request(self, command: str, timeout: float = DEFAULT_TIMEOUT_S, **fields: Any) -> Event:
        """Send a command and wait for its reply event."""
        request_id = next(self._ids)
        since = self.mark()
        self.send(command, id=request_id, **fields)
        return self.wait_for(
            lambda e: e.get("event") == "reply" and e.get("id") == request_id, timeout, since
        )

    def client_area(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the (main) window's inside, in desktop pixels, now."""
        reply = self.request("geometry")
        return int(reply["x"]), int(reply["y"]), int(reply["width"]), int(reply["height"])

    def center(self) -> tuple[int, int]:
        """The desktop pixel at the middle of the (main) window's inside."""
        x, y, width, height = self.client_area()
        return x + width // 2, y + height // 2

    def close(self, timeout: float = 5.0) -> None:
        """Ask the program to quit, kill it if it does not, and reap it."""
        if self.proc.poll() is None:
            try:
                self.send("quit")
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()

    def __enter__(self: _XAppT) -> _XAppT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_XAppT = TypeVar("_XAppT", bound=XApp)


class Probe(XApp):
    """A window with a focused Tk ``Text`` widget that reports input (see the module doc)."""

    def text(self, timeout: float = DEFAULT_TIMEOUT_S) -> str:
        """The text in the widget now."""
        return str(self.request("text", timeout)["text"])

    def clear(self) -> None:
        """Empty the widget."""
        self.request("clear")

    def focus(self) -> None:
        """Make the program take the input focus itself (as a click would)."""
        self.request("focus")

    def keys(self, since: int = 0) -> list[Event]:
        """Key press and release events from index ``since``."""
        return [e for e in self.events(since=since) if e["event"] in ("key_press", "key_release")]

    def buttons(self, since: int = 0) -> list[Event]:
        """Button press and release events from index ``since``."""
        return [
            e for e in self.events(since=since) if e["event"] in ("button_press", "button_release")
        ]


class DialogApp(XApp):
    """A main window and a dialog transient for it."""

    @property
    def dialog_id(self) -> int:
        """The X id of the dialog's client window."""
        return int(self.ready["dialog"])


class ColorWindow(XApp):
    """A window painted in one colour, or in four quadrants, that can change on command."""

    def set_color(self, color: str) -> None:
        """Paint the whole window ``color`` (``"#rrggbb"``) and wait until it is drawn."""
        self.request("color", color=color)

    def animate(self, colors: Sequence[str], interval_ms: int = 50) -> None:
        """Cycle through ``colors`` every ``interval_ms`` until :meth:`still`."""
        self.request("animate", colors=list(colors), interval_ms=interval_ms)

    def still(self) -> None:
        """Stop animating, keeping the current colour."""
        self.request("still")


def _geometry(width: int, height: int, x: int, y: int) -> str:
    return f"{width}x{height}+{x}+{y}"


def launch_probe(
    title: str,
    x: int = 100,
    y: int = 100,
    width: int = 400,
    height: int = 300,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Probe:
    """Start an input probe window titled ``title``, asking for ``(x, y)`` (the window
    manager puts the frame's corner there) and ``width`` x ``height`` inside."""
    args = ["--title", title, "--geometry", _geometry(width, height, x, y)]
    return Probe("probe", args, env, timeout)


def launch_dialog(
    title: str,
    dialog_title: str,
    x: int = 100,
    y: int = 100,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> DialogApp:
    """Start a main window ``title`` with a dialog ``dialog_title`` transient for it."""
    args = ["--title", title, "--dialog-title", dialog_title]
    args += ["--geometry", _geometry(400, 300, x, y)]
    return DialogApp("dialog", args, env, timeout)


def launch_color_window(
    title: str,
    color: str = "#ff0000",
    x: int = 100,
    y: int = 100,
    width: int = 200,
    height: int = 150,
    quadrants: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> ColorWindow:
    """Start a window painted ``color``, or with ``quadrants`` (top-left, top-right,
    bottom-left, bottom-right colours), placed like :func:`launch_probe`'s."""
    args = ["--title", title, "--geometry", _geometry(width, height, x, y), "--color", color]
    if quadrants is not None:
        if len(quadrants) != 4:
            raise ValueError(
                "quadrants takes four colours: top-left, top-right, bottom-left, bottom-right"
            )
        args += ["--quadrants", ",".join(quadrants)]
    return ColorWindow("color", args, env, timeout)


# -- the programs themselves, run as ``python -m remotehands.testing.xapps KIND`` -------------


def _emit(event: Event) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _publish_pid(window_ids: Sequence[int]) -> dict[int, int]:
    """Set ``_NET_WM_PID`` and ``WM_CLIENT_MACHINE`` on the client windows that hold the Tk
    windows ``window_ids`` (Tk sets neither); answers Tk window id -> client window id."""
    import socket

    from Xlib import Xatom, display

    d = display.Display()
    pid_atom = d.intern_atom("_NET_WM_PID")
    clients = {}
    for inner in window_ids:
        # Tk puts each toplevel in a "wrapper" window: that is the client the WM manages.
        wrapper = d.create_resource_object("window", inner).query_tree().parent
        wrapper.change_property(pid_atom, Xatom.CARDINAL, 32, [os.getpid()])
        wrapper.change_property(
            Xatom.WM_CLIENT_MACHINE, Xatom.STRING, 8, socket.gethostname().encode()
        )
        clients[inner] = int(wrapper.id)
    d.sync()
    d.close()
    return clients


def _program_main(argv: Sequence[str]) -> int:  # pragma: no cover - runs in the subprocess
    import tkinter as tk

    parser = argparse.ArgumentParser(prog="python -m remotehands.testing.xapps")
    parser.add_argument("kind", choices=["probe", "dialog", "color"])
    parser.add_argument("--title", required=True)
    parser.add_argument("--geometry", default="400x300+100+100")
    parser.add_argument("--dialog-title", default="Dialog")
    parser.add_argument("--color", default="#ff0000")
    parser.add_argument("--quadrants", default="")
    options = parser.parse_args(argv)

    root = tk.Tk()
    root.title(options.title)
    root.geometry(options.geometry)
    handlers: dict[str, Callable[[Event], Event | None]] = {}
    ready_extra: dict[str, Any] = {}
    toplevels: list[tk.Misc] = [root]

    if options.kind == "probe":
        _build_probe(root, handlers)
    elif options.kind == "dialog":
        dialog = tk.Toplevel(root)
        dialog.title(options.dialog_title)
        dialog.geometry("240x120")
        dialog.transient(root)
        dialog.wm_attributes("-type", "dialog")
        tk.Label(dialog, text=options.dialog_title).pack(expand=True)
        toplevels.append(dialog)
    else:
        _build_color(root, options.color, options.quadrants, handlers)

    mapped: set[str] = set()

    def on_map(event: Any) -> None:
        if not any(str(event.widget) == str(top) for top in toplevels):
            return
        mapped.add(str(event.widget))
        if len(mapped) < len(toplevels) or "done" in ready_extra:
            return
        ready_extra["done"] = True
        root.update_idletasks()
        clients = _publish_pid([top.winfo_id() for top in toplevels])
        ready = {
            "event": "ready",
            "title": options.title,
            "pid": os.getpid(),
            "window": clients[root.winfo_id()],
        }
        if len(toplevels) > 1:
            ready["dialog"] = clients[toplevels[1].winfo_id()]
        _emit(ready)

    for top in toplevels:
        top.bind("<Map>", on_map, add="+")

    def geometry(command: Event) -> Event:
        root.update_idletasks()
        return {"x": root.winfo_rootx(), "y": root.winfo_rooty(), "width": root.winfo_width(),
                "height": root.winfo_height()}  # fmt: skip

    handlers["geometry"] = geometry

    buffer = b""

    def on_stdin(fd: Any, mask: Any) -> None:
        nonlocal buffer
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:  # the test went away: so does the window
            root.destroy()
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            command = json.loads(line)
            name = command.get("cmd")
            if name == "quit":
                root.destroy()
                return
            handler = handlers.get(name)
            reply = handler(command) if handler is not None else {"error": f"unknown {name}"}
            if "id" in command:
                _emit({"event": "reply", "id": command["id"], **(reply or {})})

    root.tk.createfilehandler(sys.stdin, tk.READABLE, on_stdin)
    root.mainloop()
    return 0


def _build_probe(root: Any, handlers: dict[str, Callable[[Event], Event | None]]) -> None:
    import tkinter as tk

    text = tk.Text(root, font=("DejaVu Sans Mono", 12), undo=False)
    text.pack(fill="both", expand=True)
    # Own binding tags ahead of the class's: "probe" sees every raw event, "probe_double"
    # recognises double clicks (in one tag a double-click pattern would hide the second press).
    text.bindtags(("probe", "probe_double", *text.bindtags()))
    text.focus_set()

    def key(kind: str) -> Callable[[Any], None]:
        def report(e: Any) -> None:
            _emit({"event": kind, "keysym": e.keysym, "char": e.char, "keycode": e.keycode,
                   "state": int(e.state)})  # fmt: skip

        return report

    def button(kind: str) -> Callable[[Any], None]:
        def report(e: Any) -> None:
            where = {"x": e.x, "y": e.y, "root_x": e.x_root, "root_y": e.y_root}
            _emit({"event": kind, "button": int(e.num), **where, "state": int(e.state)})
            if kind == "button_press" and e.num in (4, 5):
                axis = "horizontal" if int(e.state) & 1 else "vertical"
                direction = 1 if e.num == 5 else -1
                _emit({"event": "wheel", "axis": axis, "direction": direction,
                       "root_x": e.x_root, "root_y": e.y_root})  # fmt: skip

        return report

    def motion(e: Any) -> None:
        _emit({"event": "motion", "x": e.x, "y": e.y, "root_x": e.x_root, "root_y": e.y_root,
               "state": int(e.state)})  # fmt: skip

    def double(e: Any) -> None:
        _emit({"event": "double_click", "button": int(e.num), "root_x": e.x_root,
               "root_y": e.y_root})  # fmt: skip

    text.bind_class("probe", "<KeyPress>", key("key_press"))
    text.bind_class("probe", "<KeyRelease>", key("key_release"))
    text.bind_class("probe", "<ButtonPress>", button("button_press"))
    text.bind_class("probe", "<ButtonRelease>", button("button_release"))
    text.bind_class("probe", "<Motion>", motion)
    text.bind_class("probe", "<FocusIn>", lambda e: _emit({"event": "focus_in"}))
    text.bind_class("probe", "<FocusOut>", lambda e: _emit({"event": "focus_out"}))
    for number in (1, 2, 3):
        text.bind_class("probe_double", f"<Double-ButtonPress-{number}>", double)

    def get_text(command: Event) -> Event:
        return {"text": text.get("1.0", "end-1c")}

    def clear(command: Event) -> Event:
        text.delete("1.0", "end")
        return {}

    def focus(command: Event) -> Event:
        root.focus_force()
        text.focus_set()
        return {}

    handlers.update({"text": get_text, "clear": clear, "focus": focus})


def _build_color(
    root: Any, color: str, quadrants: str, handlers: dict[str, Callable[[Event], Event | None]]
) -> None:
    import tkinter as tk

    canvas = tk.Canvas(root, highlightthickness=0, borderwidth=0, background=color)
    canvas.pack(fill="both", expand=True)
    animation: dict[str, Any] = {"job": None}

    def paint_quadrants(event: Any = None) -> None:
        canvas.delete("quadrant")
        if not quadrants:
            return
        width, height = canvas.winfo_width(), canvas.winfo_height()
        half_w, half_h = width // 2, height // 2
        boxes = [(0, 0, half_w, half_h), (half_w, 0, width, half_h),
                 (0, half_h, half_w, height), (half_w, half_h, width, height)]  # fmt: skip
        for box, fill in zip(boxes, quadrants.split(","), strict=True):
            canvas.create_rectangle(*box, fill=fill, outline="", tags="quadrant")

    canvas.bind("<Configure>", paint_quadrants)

    def paint(new_color: str) -> None:
        canvas.delete("quadrant")
        canvas.configure(background=new_color)
        canvas.update_idletasks()
        _emit({"event": "painted", "color": new_color})

    def stop() -> None:
        if animation["job"] is not None:
            root.after_cancel(animation["job"])
            animation["job"] = None

    def set_color(command: Event) -> Event:
        stop()
        paint(command["color"])
        return {}

    def animate(command: Event) -> Event:
        stop()
        colors = itertools.cycle(command["colors"])
        interval = int(command.get("interval_ms", 50))

        def step() -> None:
            paint(next(colors))
            animation["job"] = root.after(interval, step)

        step()
        return {}

    def still(command: Event) -> Event:
        stop()
        return {}

    handlers.update({"color": set_color, "animate": animate, "still": still})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_program_main(sys.argv[1:]))
