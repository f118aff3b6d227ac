"""``remotehands desktop`` runs a virtual desktop, and a sound server for it, in the foreground
until stopped."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# The desktop command in its own process, with its Xvfb.
pytestmark = pytest.mark.slow

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def test_desktop_command_serves_a_display_until_interrupted() -> None:
    proc = subprocess.Popen([REMOTEHANDS, "desktop", "--size", "800x600", "--json"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the desktop printed nothing within 60 s"
        info = json.loads(proc.stdout.readline())
        assert info["size"] == "800x600" and info["display"].startswith(":")
        env = {**os.environ, "DISPLAY": info["DISPLAY"], "XAUTHORITY": info["XAUTHORITY"]}
        out = subprocess.run(["xwininfo", "-root"], env=env, capture_output=True, text=True,
                             timeout=20)  # fmt: skip
        assert "Width: 800" in out.stdout and "Height: 600" in out.stdout
        tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True,
                              text=True, timeout=20).stdout  # fmt: skip
        assert '"terminal"' in tree
        # without the cookie the display refuses clients
        bare = {k: v for k, v in env.items() if k != "XAUTHORITY"}
        bare["HOME"] = "/nonexistent"
        refused = subprocess.run(["xwininfo", "-root"], env=bare, capture_output=True,
                                 text=True, timeout=20)  # fmt: skip
        assert refused.returncode != 0
        # its sound server answers at the printed PULSE_SERVER, with its null output
        sound = {**os.environ, "PULSE_SERVER": info["PULSE_SERVER"]}
        sinks = subprocess.run(["pactl", "-f", "json", "list", "sinks"], env=sound,
                               capture_output=True, text=True, timeout=20, check=True)  # fmt: skip
        assert [s["name"] for s in json.loads(sinks.stdout)] == ["remotehands"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0
    # and stops with the desktop: its socket is gone
    assert not Path(info["PULSE_SERVER"].removeprefix("unix:")).exists()


def test_desktop_command_refuses_a_silly_size() -> None:
    done = subprocess.run([REMOTEHANDS, "desktop", "--size", "big"], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "WIDTHxHEIGHT" in done.stderr
