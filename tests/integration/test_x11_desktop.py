"""The virtual desktop: Xvfb with a cookie, a window manager and a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import Xlib.error
from Xlib.display import Display

from remotehands.agent.desktop import VirtualDesktop
from remotehands.errors import ConfigError

pytestmark = pytest.mark.x11


def test_the_session_desktop_runs_a_window_manager_and_a_terminal(
    desktop: VirtualDesktop,
) -> None:
    assert desktop.display is not None and desktop.display.startswith(":")
    assert os.environ["DISPLAY"] == desktop.display
    assert os.environ["XAUTHORITY"] == desktop.env["XAUTHORITY"]
    display = Display(desktop.display)
    try:
        root = display.screen().root
        geometry = root.get_geometry()
        assert (geometry.width, geometry.height) == (1280, 800)
        assert display.get_selection_owner(display.intern_atom("WM_S0")) != 0
        for extension in ("MIT-SHM", "XTEST", "RANDR"):
            assert display.query_extension(extension) is not None, extension
    finally:
        display.close()
    assert set(desktop.pids) == {"Xvfb", "openbox", "xterm"}


def test_clients_need_the_cookie(desktop: VirtualDesktop, monkeypatch: pytest.MonkeyPatch) -> None:
    xvfb = psutil.Process(desktop.pids["Xvfb"]).cmdline()
    assert "-ac" not in xvfb
    assert xvfb[xvfb.index("-nolisten") + 1] == "tcp"
    monkeypatch.setenv("XAUTHORITY", os.devnull)
    with pytest.raises(Xlib.error.DisplayConnectionError):
        Display(desktop.display)


def test_a_bare_desktop_on_a_chosen_display_starts_and_stops(desktop: VirtualDesktop) -> None:
    assert desktop.display is not None
    number = int(desktop.display[1:]) + 50
    bare = VirtualDesktop(display=f":{number}", size=(640, 480), window_manager=False)
    with bare:
        assert bare.display == f":{number}"
        assert set(bare.pids) == {"Xvfb", "xterm"}
        pids = list(bare.pids.values())
        auth = Path(bare.env["XAUTHORITY"])
        assert auth.exists() and oct(auth.parent.stat().st_mode & 0o777) == "0o700"
    assert not any(psutil.pid_exists(pid) for pid in pids)  # stopped and reaped
    assert not auth.parent.exists()
    assert bare.env == {} and not bare.running


def test_missing_xvfb_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="install the xvfb package"):
        VirtualDesktop().start()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="':N'"):
        VirtualDesktop(display="localhost:3")
    with pytest.raises(ConfigError, match="size"):
        VirtualDesktop(size=(0, 600))


def test_run_forever_stops_on_sigterm(desktop: VirtualDesktop) -> None:
    script = (
        "from remotehands.agent.desktop import VirtualDesktop\n"
        "VirtualDesktop(size=(320, 240), terminal=False).run_forever()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "is running" in lines[0]
        assert lines[1].startswith("export DISPLAY=:") and lines[2].startswith("export XAUTHORITY=")
        children = psutil.Process(proc.pid).children()
        assert {child.name() for child in children} == {"Xvfb", "openbox"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not any(child.is_running() and child.status() != "zombie" for child in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
