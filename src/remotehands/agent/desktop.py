"""A virtual desktop: Xvfb, a window manager (openbox) and a terminal (xterm).

``remotehands desktop`` and the tests run one so that the x11 driver has a real X server to
drive, on machines without a screen. The server listens on its local socket only
(``-nolisten tcp``) and requires a MIT-MAGIC-COOKIE-1 cookie: a fresh one, made with ``xauth`` in
a private temporary directory, handed to the clients through ``XAUTHORITY``. ``-ac`` (no access
control) is never used: any local user could then read the screen and type into it.

Readiness is waited for, never slept for: Xvfb reports its display number on ``-displayfd``
once it accepts connections; the window manager is up once it owns the ``WM_S0`` selection;
the terminal once its window is mapped. The last two are checked by a short-lived helper
process (``python -m remotehands.agent.desktop``) started with the desktop's environment,
because python-xlib reads the cookie file only from ``os.environ`` and this class never
changes its caller's environment.

Example::

    with VirtualDesktop(size=(1280, 800)) as desktop:
        subprocess.run(["xclock"], env={**os.environ, **desktop.env})
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from remotehands.agent.children import STOP_TIMEOUT_S, log_tail, stop_process
from remotehands.errors import ConfigError, DeviceError, DeviceTimeoutError

__all__ = ["VirtualDesktop"]

_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = STOP_TIMEOUT_S
_POLL_S = 0.02

_PACKAGES = {"Xvfb": "xvfb", "xauth": "xauth", "openbox": "openbox", "xterm": "xterm"}


class VirtualDesktop:
    """Xvfb on a free display (or ``display``), with openbox and an xterm if asked.

    After :meth:`start`, ``display`` is the display name (``":N"``) and ``env`` holds
    ``DISPLAY`` and ``XAUTHORITY`` for clients: ``subprocess.Popen(..., env={**os.environ,
    **desktop.env})``. Use it as a context manager (``with`` or ``async with``), or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        display: str | None = None,
        size: tuple[int, int] = (1920, 1080),
        window_manager: bool = True,
        terminal: bool = True,
    ) -> None:
        width, height = size
        if not (1 <= width <= 16384 and 1 <= height <= 16384):
            raise ConfigError(f"desktop size {width}x{height} is out of range (1 to 16384)")
        if display is not None and not (display.startswith(":") and display[1:].isdigit()):
            raise ConfigError(f"bad display {display!r}: write it as ':N', for example ':99'")
        self.size = (width, height)
        self._requested = display
        self.display: str | None = display
        """``":N"``; when None was asked for, set by :meth:`start` to the display Xvfb chose."""
        self.window_manager = window_manager
        self.terminal = terminal
        self.env: dict[str, str] = {}
        """``DISPLAY`` and ``XAUTHORITY`` of the running desktop; empty before :meth:`start`."""
        self._tmp: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the X server is up."""
        xvfb = self._procs.get("Xvfb")
        return xvfb is not None and xvfb.poll() is None

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the desktop's processes by program (``Xvfb``, ``openbox``, ``xterm``)."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def start(self) -> None:
        """Start Xvfb, then the window manager, then the terminal, each once it can work.

        Raises :class:`ConfigError` when a program is missing, :class:`DeviceError` when one
        fails to start, :class:`DeviceTimeoutError` when one is not ready in time.
        """
        if self._procs:
            return
        self._require("Xvfb", "xauth")
        if self.window_manager:
            self._require("openbox")
        if self.terminal:
            self._require("xterm")
        self._tmp = Path(tempfile.mkdtemp(prefix="remotehands-desktop-"))
        try:
            self._start_xvfb()
            if self.window_manager:
                self._spawn("openbox", ["openbox"])
                self._wait_helper("window manager", ["wm"], "openbox")
            if self.terminal:
                # A plain interactive shell: the user's rc files may block on start-up (version
                # managers, network mounts), and a demo or a test needs a prompt at once.
                shell = ["env", "PS1=$ ", "bash", "--noprofile", "--norc", "-i"]
                xterm = self._spawn("xterm", ["xterm", "-T", "terminal", "-e", *shell])
                self._wait_helper("terminal", ["mapped", str(xterm.pid)], "xterm")
        except BaseException:
            self.stop()
            raise

    def _require(self, *programs: str) -> None:
        for program in programs:
            if shutil.which(program) is None:
                raise ConfigError(
                    f"{program} is not installed: install the {_PACKAGES[program]} package "
                    f"(apt-get install {_PACKAGES[program]}) to run a virtual desktop"
                )

    def _start_xvfb(self) -> None:
        assert self._tmp is not None
        cookie = secrets.token_hex(16)
        # The server reads every cookie in its -auth file whatever display it names; the
        # clients' file is written once the display number is known, and names only it.
        server_auth = self._tmp / "server.xauth"
        self._xauth(server_auth, self._requested or ":0", cookie)
        read_fd, write_fd = os.pipe()
        width, height = self.size
        args = ["Xvfb"]
        if self._requested is not None:
            args.append(self._requested)
        args += [
            "-displayfd", str(write_fd),
            "-screen", "0", f"{width}x{height}x24",
            "-nolisten", "tcp",
            "-auth", str(server_auth),
            "+extension", "MIT-SHM",
            "-noreset",  # no server reset (and lost state) when the last client disconnects
        ]  # fmt: skip
        try:
            self._spawn("Xvfb", args, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:
            number = self._read_display_number(read_fd)
        finally:
            os.close(read_fd)
        self.display = f":{number}"
        client_auth = self._tmp / "Xauthority"
        self._xauth(client_auth, self.display, cookie)
        self.env = {"DISPLAY": self.display, "XAUTHORITY": str(client_auth)}

    def _xauth(self, path: Path, display: str, cookie: str) -> None:
        result = subprocess.run(
            ["xauth", "-q", "-f", str(path), "add", display, "MIT-MAGIC-COOKIE-1", cookie],
            capture_output=True,
            timeout=_STOP_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise DeviceError(
                f"xauth could not write {path}: {result.stderr.decode(errors='replace').strip()}"
            )

    def _read_display_number(self, fd: int) -> int:
        # Xvfb writes "N\n" once it accepts connections, and exits on failure (EOF here).
        deadline = time.monotonic() + _START_TIMEOUT_S
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeoutError(
                    f"Xvfb did not report ready within {_START_TIMEOUT_S:g} s"
                    f"{self._log_tail('Xvfb')}"
                )
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 64)
            if not chunk:
                self._procs["Xvfb"].wait(timeout=_STOP_TIMEOUT_S)
                raise DeviceError(
                    f"Xvfb exited with status {self._procs['Xvfb'].returncode} before it was "
                    f"ready{self._log_tail('Xvfb')}"
                )
            data += chunk
        return int(data.strip())

    def _spawn(
        self, name: str, args: list[str], pass_fds: Sequence[int] = ()
    ) -> subprocess.Popen[bytes]:
        assert self._tmp is not None
        log = open(self._tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs[name] = log
        env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
        env.update(self.env)
        try:
            proc = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                cwd=str(self._tmp),
            )
        except OSError as err:
            raise DeviceError(f"cannot start {args[0]}: {err}") from err
        self._procs[name] = proc
        return proc

    def _wait_helper(self, what: str, condition: list[str], program: str) -> None:
        env = {**os.environ, **self.env}
        helper = [sys.executable, "-m", "remotehands.agent.desktop", "--timeout"]
        helper += [str(_START_TIMEOUT_S), *condition]
        result = subprocess.run(
            helper, env=env, capture_output=True, timeout=_START_TIMEOUT_S + 10, check=False
        )
        if result.returncode == 0:
            return
        proc = self._procs[program]
        if proc.poll() is not None:
            raise DeviceError(
                f"{program} exited with status {proc.returncode} while starting the {what}"
                f"{self._log_tail(program)}"
            )
        raise DeviceTimeoutError(
            f"the {what} ({program}) was not ready within {_START_TIMEOUT_S:g} s: "
            f"{result.stderr.decode(errors='replace').strip()}{self._log_tail(program)}"
        )

    def _log_tail(self, name: str) -> str:
        return "" if self._tmp is None else log_tail(self._tmp / f"{name}.log")

    def stop(self) -> None:
        """Terminate the terminal, the window manager and Xvfb, reap them, remove the files."""
        for name in reversed(list(self._procs)):
            stop_process(self._procs[name])
        self._procs.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self.env = {}

    def __enter__(self) -> VirtualDesktop:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> VirtualDesktop:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def run_forever(self, out: IO[str] | None = None) -> None:
        """Start, print how to reach the desktop, and run until SIGINT or SIGTERM.

        Call it from the main thread. Raises :class:`DeviceError` if Xvfb dies meanwhile.
        """
        stream = sys.stdout if out is None else out
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            size = f"{self.size[0]}x{self.size[1]}"
            stream.write(f"virtual desktop {self.display} ({size}) is running; Ctrl-C stops it\n")
            for key, value in self.env.items():
                stream.write(f"export {key}={value}\n")
            stream.flush()
            while not stop.wait(0.5):
                if not self.running:
                    raise DeviceError(f"Xvfb on {self.display} exited{self._log_tail('Xvfb')}")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# -- the readiness helper, run as ``python -m remotehands.agent.desktop`` with the desktop's env


def _wait_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m remotehands.agent.desktop")
    parser.add_argument("--timeout", type=float, default=_START_TIMEOUT_S)
    sub = parser.add_subparsers(dest="condition", required=True)
    sub.add_parser("wm", help="wait until a window manager owns WM_S0")
    mapped = sub.add_parser("mapped", help="wait until a window of PID is mapped")
    mapped.add_argument("pid", type=int)
    options = parser.parse_args(argv)

    from Xlib import X, Xatom, display, error  # the helper alone needs python-xlib

    deadline = time.monotonic() + options.timeout
    try:
        d = display.Display()
    except (error.DisplayError, OSError) as err:
        sys.stderr.write(f"cannot connect to {os.environ.get('DISPLAY')}: {err}\n")
        return 1
    root = d.screen().root
    wm_s0 = d.intern_atom("WM_S0")
    client_list = d.intern_atom("_NET_CLIENT_LIST")
    wm_pid = d.intern_atom("_NET_WM_PID")

    def ready() -> bool:
        if options.condition == "wm":
            return bool(getattr(d.get_selection_owner(wm_s0), "id", 0))
        # Managed windows when a window manager runs, else the top-level windows themselves.
        clients = root.get_full_property(client_list, Xatom.WINDOW)
        if clients is not None:
            windows = [d.create_resource_object("window", int(w)) for w in clients.value]
        else:
            windows = root.query_tree().children
        for window in windows:
            try:
                pid = window.get_full_property(wm_pid, Xatom.CARDINAL)
                viewable = window.get_attributes().map_state == X.IsViewable
            except (error.BadWindow, error.BadMatch):
                continue
            if pid is not None and int(pid.value[0]) == options.pid and viewable:
                return True
        return False

    while not ready():
        if time.monotonic() >= deadline:
            sys.stderr.write(f"{options.condition}: not ready after {options.timeout:g} s\n")
            return 1
        time.sleep(_POLL_S)  # polling the condition; nothing here can be waited on
    d.close()
    return 0


if __name__ == "__main__":
    sys.exit(_wait_main(sys.argv[1:]))
