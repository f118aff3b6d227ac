"""Fixtures shared by every test directory.

- ``anyio_backend``: async tests (``@pytest.mark.anyio``) run on asyncio.
- ``desktop``: one real virtual desktop (Xvfb + openbox + xterm, 1280x800) for the whole
  session, started on first use. While it runs, ``DISPLAY`` and ``XAUTHORITY`` in
  ``os.environ`` point at it, so drivers and test programs reach it without arguments. Missing
  Xvfb is an error, not a skip: the tests that need a desktop must run.
- ``sound_server``: one real PulseAudio server for the whole session, with two null outputs
  (``rh_one``, the default, and ``rh_two``) and a runtime directory of its own; its address is
  ``sound_server.address``. Skipped only where the ``pulseaudio`` program is missing
  (``scripts/system-deps`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.soundserver import SoundServer


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@contextlib.contextmanager
def desktop_as_display(size: tuple[int, int] = (1280, 800)) -> Iterator[VirtualDesktop]:
    """A virtual desktop, this process's DISPLAY (and XAUTHORITY) while it runs."""
    saved = {key: os.environ.get(key) for key in ("DISPLAY", "XAUTHORITY")}
    with VirtualDesktop(size=size) as running:
        os.environ.update(running.env)
        try:
            yield running
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def desktop() -> Iterator[VirtualDesktop]:
    with desktop_as_display() as running:
        yield running


@pytest.fixture(scope="session")
def sound_server() -> Iterator[SoundServer]:
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed: scripts/system-deps installs it")
    with SoundServer(("rh_one", "rh_two")) as running:
        yield running
