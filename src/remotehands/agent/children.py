"""Child processes the agent starts for a session of its own (Xvfb and its desktop, a sound
server): stopping one politely, then firmly, and quoting the end of its log in an error."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

__all__ = ["STOP_TIMEOUT_S", "log_tail", "stop_process"]

STOP_TIMEOUT_S: Final = 5.0
"""How long a child has to exit after SIGTERM, and again after SIGKILL."""


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Terminate ``proc`` if it still runs and reap it; kill it when it outlives ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def log_tail(path: Path, size: int = 2000) -> str:
    """The last ``size`` bytes of the log at ``path`` as ``"; its log ends with: ..."`` for an
    error message, or ``""`` when it is empty or cannot be read."""
    try:
        text = path.read_bytes()[-size:].decode(errors="replace").strip()
    except OSError:
        return ""
    return f"; its log ends with:\n{text}" if text else ""
