"""A small X client whose window changes ``--rate`` times a second: a counter and a moving bar.

    python bench/counter_window.py [--rate 120] [--geometry 1920x1080+0+0]

A screen that changes on every grab, for frame-rate figures (a scrolling terminal repaints when
its own timers say so, which is not on every grab of a 30/s stream). Each redraw is flushed at
once; the window is drawn on a deadline grid, so the rate does not drift on a busy machine.
Runs until killed. A bench helper, not part of the product.
"""

from __future__ import annotations

import argparse
import time

from Xlib import display


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=120.0)
    parser.add_argument("--geometry", default="1920x1080+0+0")
    args = parser.parse_args()
    size, _, rest = args.geometry.partition("+")
    width, height = (int(v) for v in size.split("x"))
    x, _, y = rest.partition("+")
    dpy = display.Display()
    screen = dpy.screen()
    window = screen.root.create_window(
        int(x or 0), int(y or 0), width, height, 0, screen.root_depth,
        background_pixel=screen.white_pixel, override_redirect=True,
    )  # fmt: skip
    window.map()
    gc = window.create_gc(foreground=screen.black_pixel, background=screen.white_pixel)
    white = window.create_gc(foreground=screen.white_pixel)
    dpy.sync()
    period = 1.0 / args.rate
    start = time.monotonic()
    count = 0
    bar = 0
    while True:
        count += 1
        window.fill_rectangle(white, 0, 0, width, 80)
        window.image_text(gc, 20, 40, f"frame {count:09d}")
        window.fill_rectangle(white, bar, 100, 200, 200)
        bar = (bar + 17) % max(1, width - 200)
        window.fill_rectangle(gc, bar, 100, 200, 200)
        dpy.flush()
        wake = start + count * period
        time.sleep(max(0.0, wake - time.monotonic()))


if __name__ == "__main__":
    main()
