"""A private PulseAudio server with null outputs: sound for a virtual desktop, and for tests.

``remotehands desktop`` runs one beside Xvfb so that the demo has audio to control; the tests
run one with two outputs to route a playing client between. The server is the Debian
``pulseaudio`` program in the foreground (``--daemonize=no``), with no configuration file
(``-n``) and only the modules loaded here: one null sink per output (sound goes nowhere, but
volumes, mutes, routing and the sessions are real) and the native protocol on a socket in a
private directory (mode 0700, so only this user reaches it; the socket then needs no cookie).
Its runtime, state and config directories are that directory too, so it never touches the
user's own sound server or files.

Clients find it through ``env`` (``PULSE_SERVER``). Readiness is waited for, not slept for: the
socket module is loaded last, so a socket that accepts connections means every output is there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from remotehands.agent.children import log_tail, stop_process
from remotehands.errors import ConfigError, DeviceError, DeviceTimeoutError

__all__ = ["SoundServer"]

_START_TIMEOUT_S = 20.0
_POLL_S = 0.02


class SoundServer:
    """``pulseaudio`` with one null sink per name of ``outputs`` (the first one the default).

    After :meth:`start`, ``env`` holds ``PULSE_SERVER`` for clients and ``address`` the same
    address. ``directory`` (mode 0700, made if missing) keeps the socket at the same address
    across a stop and a start, and is left in place; by default a fresh temporary directory is
    made and removed. Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self, outputs: Sequence[str] = ("remotehands",), directory: Path | None = None
    ) -> None:
        if not outputs:
            raise ConfigError("a sound server needs at least one output")
        for name in outputs:
            if not name or not all(c.isalnum() or c in "_.-" for c in name):
                raise ConfigError(f"bad output name {name!r}: use letters, digits, '_', '.', '-'")
        self.outputs = tuple(outputs)
        self.address: str | None = None
        """``unix:DIR/pulse/native`` once started."""
        self.runtime_dir: Path | None = None
        """``DIR``: as ``XDG_RUNTIME_DIR`` it leads clients to the server too, once started."""
        self.env: dict[str, str] = {}
        """``PULSE_SERVER`` of the running server; empty before :meth:`start`."""
        self.directory = directory
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id, while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and wait until it accepts clients.

        :class:`ConfigError` when ``pulseaudio`` is not installed, :class:`DeviceError` when it
        exits while starting, :class:`DeviceTimeoutError` when it is not ready in time.
        """
        if self._proc is not None:
            return
        program = shutil.which("pulseaudio")
        if program is None:
            raise ConfigError(
                "pulseaudio is not installed: apt-get install pulseaudio pulseaudio-utils "
                "to give the desktop a sound server"
            )
        if self.directory is not None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._tmp = self.directory
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="remotehands-pulse-"))
        # where clients look under XDG_RUNTIME_DIR, so that directory alone finds it too
        native = self._tmp / "pulse" / "native"
        native.parent.mkdir(mode=0o700, exist_ok=True)
        modules = [
            f"module-null-sink sink_name={name} sink_properties=device.description={name}"
            for name in self.outputs
        ]
        modules.append(f"module-native-protocol-unix socket={native} auth-anonymous=1")
        args = [program, "--daemonize=no", "-n", "--exit-idle-time=-1", "--use-pid-file=no",
                "--system=no", "--log-target=stderr"]  # fmt: skip
        for module in modules:
            args += ["-L", module]
        # Its own home, runtime and state: the user's sound server and settings stay untouched.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env.update(HOME=str(self._tmp), XDG_RUNTIME_DIR=str(self._tmp),
                   XDG_CONFIG_HOME=str(self._tmp / "config"),
                   PULSE_RUNTIME_PATH=str(self._tmp / "runtime"),
                   PULSE_STATE_PATH=str(self._tmp / "state"))  # fmt: skip
        env.pop("DISPLAY", None)  # no X11 publishing of the server into a user's display
        try:
            with open(self._tmp / "pulseaudio.log", "wb") as log:
                self._proc = subprocess.Popen(
                    args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=str(self._tmp),
                )  # fmt: skip
            self._wait_ready(native)
        except BaseException:
            self.stop()
            raise
        self.address = f"unix:{native}"
        self.runtime_dir = self._tmp
        self.env = {"PULSE_SERVER": self.address}

    def _wait_ready(self, native: Path) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DeviceError(
                    f"pulseaudio exited with status {self._proc.returncode} while starting"
                    f"{self._log_tail()}"
                )
            if native.exists():
                with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
                    probe.connect(str(native))
                    return
            if time.monotonic() >= deadline:
                raise DeviceTimeoutError(
                    f"pulseaudio did not accept clients within {_START_TIMEOUT_S:g} s"
                    f"{self._log_tail()}"
                )
            time.sleep(_POLL_S)  # polling a condition (the socket), bounded by the deadline

    def _log_tail(self) -> str:
        return "" if self._tmp is None else log_tail(self._tmp / "pulseaudio.log")

    def stop(self) -> None:
        """Stop the server, reap it, remove its directory (unless it was given)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)
        if self._tmp is not None and self.directory is None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
        self.address = self.runtime_dir = None
        self.env = {}

    def __enter__(self) -> SoundServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
