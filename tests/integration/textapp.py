"""A Tk window of text for OCR, act and MCP tests, in its own process on ``DISPLAY``.

``python tests/integration/textapp.py`` shows labels of known text at several pixel sizes, an
``Apply`` button that closes the window when pressed, an entry that has the keyboard focus, and
a ``Animate`` button that repaints a canvas every 30 ms for ``--animate-ms`` and then stops. It
prints one JSON object a line: ``{"event": "ready", "labels": {text: [x, y, w, h]}, "canvas":
[x, y, w, h], "apply": [...], "animate": [...]}`` in desktop pixels once mapped, then
``{"event": "applied"}``, ``{"event": "animating"}`` and ``{"event": "stopped"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from remotehands.testing.xapps import wait_until

LABELS: dict[str, int] = {
    "Alpha seven nine": 12,
    "Bravo eight four": 15,
    "Charlie nine two": 20,
    "Delta ten eleven": 30,
}
"""The label texts and their font size in pixels."""


class TextApp:
    """The running program and what it reported."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            # when it arrived here (time.monotonic), to time what the test did against it
            self.events.append({**json.loads(line), "at": time.monotonic()})

    def seen(self, kind: str) -> dict[str, Any] | None:
        """The first event of ``kind`` reported so far."""
        return next((e for e in list(self.events) if e["event"] == kind), None)

    def wait(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first event of ``kind``, waiting for it."""
        event: dict[str, Any] = wait_until(lambda: self.seen(kind) or {}, timeout=timeout)
        return event

    @property
    def ready(self) -> dict[str, Any]:
        return self.wait("ready")

    def centre(self, name: str) -> tuple[int, int]:
        """The centre of the widget ``name`` (apply, animate, canvas, entry)."""
        x, y, w, h = self.ready[name]
        return x + w // 2, y + h // 2


@contextmanager
def launch_text_app(
    x: int = 60, y: int = 60, animate_ms: int = 600, env: Mapping[str, str] | None = None
) -> Iterator[TextApp]:
    """Run the program at ``x, y`` until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, __file__, str(x), str(y), str(animate_ms)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    app = TextApp(proc)
    try:
        app.wait("ready", timeout=15)
        yield app
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _main() -> None:  # pragma: no cover - runs in the subprocess
    import tkinter as tk

    x, y, animate_ms = (int(v) for v in sys.argv[1:4])
    root = tk.Tk()
    root.title("textapp")
    root.configure(bg="white")
    root.geometry(f"+{x}+{y}")

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    labels = {}
    for text, size in LABELS.items():
        label = tk.Label(root, text=text, font=("DejaVu Sans", -size), bg="white", fg="black")
        label.pack(anchor="w", padx=12, pady=6)
        labels[text] = label
    entry = tk.Entry(root, font=("DejaVu Sans", -18), width=30)
    entry.pack(anchor="w", padx=12, pady=6)
    canvas = tk.Canvas(root, width=240, height=90, bg="#202020", highlightthickness=0)
    canvas.pack(anchor="w", padx=12, pady=6)
    row = tk.Frame(root, bg="white")
    row.pack(anchor="w", padx=12, pady=10)
    font = ("DejaVu Sans", -18)

    def applied() -> None:
        emit({"event": "applied"})
        root.destroy()

    apply = tk.Button(row, text="Apply", font=font, command=applied)
    apply.pack(side="left", padx=6)
    colours = ["#e03030", "#30c030", "#3050e0", "#e0c020"]
    ticks = {"n": 0}

    def frame(left_ms: int) -> None:
        ticks["n"] += 1
        canvas.configure(bg=colours[ticks["n"] % len(colours)])
        if left_ms > 0:
            root.after(30, frame, left_ms - 30)
        else:
            emit({"event": "stopped"})

    def animate() -> None:
        emit({"event": "animating"})
        frame(animate_ms)

    tk.Button(row, text="Animate", font=font, command=animate).pack(side="left", padx=6)
    entry.focus_force()

    def geometry(widget: Any) -> list[int]:
        return [widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(),
                widget.winfo_height()]  # fmt: skip

    def ready() -> None:
        root.update_idletasks()
        animate_button = row.winfo_children()[1]
        emit({"event": "ready", "labels": {t: geometry(w) for t, w in labels.items()},
              "entry": geometry(entry), "canvas": geometry(canvas), "apply": geometry(apply),
              "animate": geometry(animate_button)})  # fmt: skip

    root.wait_visibility()
    root.after(200, ready)
    root.mainloop()


if __name__ == "__main__":
    _main()
