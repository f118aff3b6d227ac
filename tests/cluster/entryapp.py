"""A window with one text field that prints its text (a JSON line) after every key: the test
of typing through another replica reads what reached a real X window. Run as a program."""

from __future__ import annotations

import json
import sys


def main() -> None:  # pragma: no cover - runs in the subprocess
    import tkinter as tk

    root = tk.Tk()
    root.title("entryapp")
    root.geometry("+700+400")
    # no blinking cursor: two screenshots of the same moment are the same bytes
    entry = tk.Entry(root, font=("DejaVu Sans", -18), width=24, insertofftime=0)
    entry.pack(padx=12, pady=12)

    def report(_: object = None) -> None:
        sys.stdout.write(json.dumps({"text": entry.get()}) + "\n")
        sys.stdout.flush()

    entry.bind("<KeyRelease>", report)
    root.wait_visibility()
    entry.focus_force()
    root.after(200, report)
    root.mainloop()


if __name__ == "__main__":
    main()
