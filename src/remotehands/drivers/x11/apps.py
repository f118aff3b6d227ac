"""Start programs on the display and find running ones.

Programs start detached: in a session of their own (a signal to the agent's process group does
not reach them), with stdin/stdout/stderr on ``/dev/null`` and ``DISPLAY`` set to the driver's
display. The launcher keeps the ``Popen`` objects only to reap children that exit, so none
lingers as a zombie while the agent runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

import psutil

from remotehands.errors import DeviceError, NotFoundError, ValidationError

__all__ = ["AppLauncher", "running"]


class AppLauncher:
    """Starts programs with an environment for one display."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._children: list[subprocess.Popen[bytes]] = []

    def resolve(self, path: str) -> str:
        """The executable ``path`` names: a path to a file, or a name looked up on PATH."""
        if not path or "\0" in path:
            raise ValidationError("give the path or name of a program to open")
        if os.sep in path:
            if not os.path.isfile(path):
                raise NotFoundError(f"no program at {path}: the file does not exist")
            if not os.access(path, os.X_OK):
                raise NotFoundError(f"{path} is not executable: set its execute permission")
            return path
        found = shutil.which(path, path=self._env.get("PATH", os.defpath))
        if found is None:
            raise NotFoundError(
                f"no program named {path!r} on PATH: give the full path or install it"
            )
        return found

    def open(self, path: str, args: Sequence[str]) -> int:
        """Start ``path`` with ``args``; answers its pid."""
        if isinstance(args, str):
            raise ValidationError("give args as a list of strings, not one string")
        executable = self.resolve(path)
        self.reap()
        try:
            child = subprocess.Popen(
                [executable, *args],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                cwd=self._env.get("HOME") or "/",
            )
        except FileNotFoundError as err:
            raise NotFoundError(f"cannot start {executable}: {err.strerror}") from err
        except OSError as err:
            raise DeviceError(f"cannot start {executable}: {err.strerror or err}") from err
        self._children.append(child)
        return child.pid

    def reap(self) -> None:
        """Collect children that have exited."""
        self._children = [child for child in self._children if child.poll() is None]


def running(name: str) -> list[int]:
    """Pids of live processes whose executable is called ``name``, ascending.

    The kernel's process name is cut at 15 characters, so the executable's file name and the
    first argument are compared too.
    """
    if not name:
        raise ValidationError("give the name of a program, such as 'xterm'")
    pids = []
    for proc in psutil.process_iter(["name", "exe", "cmdline", "status"]):
        info = proc.info
        if info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        candidates = {info.get("name") or ""}
        if info.get("exe"):
            candidates.add(os.path.basename(info["exe"]))
        cmdline = info.get("cmdline") or []
        if cmdline:
            candidates.add(os.path.basename(cmdline[0]))
        if name in candidates:
            pids.append(int(proc.pid))
    return sorted(pids)
