"""``remotehands agent`` refuses what cannot work with one clear line and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _agent(*args: str, password: str | None = "pw") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMOTEHANDS_AGENT_PASSWORD"}
    if password is not None:
        env["REMOTEHANDS_AGENT_PASSWORD"] = password
    return subprocess.run([REMOTEHANDS, "agent", *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _agent("--driver", "fake", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"error: could not listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_settings_are_clear_errors() -> None:
    unknown = _agent("--driver", "nope")
    assert unknown.returncode == 2 and "unknown driver 'nope'" in unknown.stderr
    listen = _agent("--driver", "fake", "--listen", "localhost")
    assert listen.returncode == 2 and "HOST:PORT" in listen.stderr
    no_password = _agent("--driver", "fake", password=None)
    assert no_password.returncode == 2 and "--password-file" in no_password.stderr
    not_enrolled = _agent("--driver", "fake", "--server", "http://127.0.0.1:9",
                          "--state-dir", "/nonexistent/state")  # fmt: skip
    assert not_enrolled.returncode == 2 and "--token ekvent_" in not_enrolled.stderr
    for done in (unknown, listen, no_password, not_enrolled):
        assert "Traceback" not in done.stderr
