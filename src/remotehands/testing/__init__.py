"""Public helpers for testing remotehands and code built on it.

- :mod:`remotehands.testing.xapps`: real X client programs (an input probe, a dialog, a
  colour/animation window) started in a subprocess on a display, reporting what they receive;
  plus :func:`~remotehands.testing.xapps.wait_until` and
  :func:`~remotehands.testing.xapps.eventually` to wait on a condition with a deadline.

The names of ``xapps`` are importable from here too. They load on first use, so that running
``python -m remotehands.testing.xapps`` does not import the module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remotehands.testing.xapps import (
        ColorWindow,
        DialogApp,
        Event,
        Probe,
        XApp,
        eventually,
        launch_color_window,
        launch_dialog,
        launch_probe,
        wait_until,
    )

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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("remotehands.testing.xapps"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
