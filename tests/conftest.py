"""Fixtures shared by every test directory.

- ``anyio_backend``: async tests (``@pytest.mark.anyio``) run on asyncio.
- ``desktop``: one real virtual desktop (Xvfb + openbox + xterm, 1280x800) for the whole
  session, started on first use. While it runs, ``DISPLAY`` and ``XAUTHORITY`` in
  ``os.environ`` point at it, so drivers and test programs reach it without arguments. Missing
  Xvfb is an error, not a skip: the tests that need a desktop must run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from remotehands.agent.desktop import VirtualDesktop


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def desktop() -> Iterator[VirtualDesktop]:
    saved = {key: os.environ.get(key) for key in ("DISPLAY", "XAUTHORITY")}
    with VirtualDesktop(size=(1280, 800)) as running:
        os.environ.update(running.env)
        try:
            yield running
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
