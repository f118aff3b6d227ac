"""The web console's files: plain HTML, CSS and JavaScript modules in ``static/``, served by the
fleet server as they are (no build step, nothing fetched from another host).

:data:`STATIC_DIR` is where they are once installed; :mod:`remotehands.server.http.web_routes`
serves them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The directory of the web console's files (in the installed package)."""
