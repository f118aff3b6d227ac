"""The x11 driver: an X display (a real desktop or Xvfb) driven in-process.

python-xlib with XTEST for input, mss with MIT-SHM for capture, EWMH for windows, and an
in-process selection owner for the clipboard. See :class:`X11Driver`.
"""

from remotehands.drivers.x11.driver import X11Driver

__all__ = ["X11Driver"]
