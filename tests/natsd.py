"""A throwaway NATS server for tests, from Debian's ``nats-server`` (``scripts/system-deps``
installs it).

:func:`start_nats` runs it on a free loopback port and waits until it accepts connections;
:meth:`NatsServer.stop` and :meth:`NatsServer.start` stop and restart it on the same port (the
tests of a replica that loses NATS while running). No Docker and no skipping: when the binary is
missing, :class:`NatsUnavailable` says how to install it.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["NatsServer", "NatsUnavailable", "start_nats"]

START_TIMEOUT_S = 10.0


class NatsUnavailable(RuntimeError):
    """nats-server cannot be started here; the message says why and what to install."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class NatsServer:
    """A ``nats-server`` process owned by the test session."""

    def __init__(self, binary: str, root: Path, port: int) -> None:
        self.binary = binary
        self.root = root
        self.port = port
        self.log_file = root / "nats.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process's id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process runs."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start it (again) on :attr:`port` and wait until it accepts connections."""
        if self.running:
            return
        config = self.root / "nats.conf"
        # screenshots cross replicas in one message: NATS's default 1 MiB is too small
        config.write_text("max_payload: 8MB\n")
        command = [self.binary, "-c", str(config), "-a", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(
            [*command, "-l", str(self.log_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log_file.read_text() if self.log_file.exists() else ""
                self.stop()
                raise NatsUnavailable(f"nats-server did not start on {self.port}:\n{log[-2000:]}")
            time.sleep(0.02)  # polling a port another process opens: nothing to wait on

    def stop(self) -> None:
        """Stop the process (idempotent); the port stays this server's."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)

    def remove(self) -> None:
        """Stop it and remove its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_nats() -> NatsServer:
    """Start a private nats-server; raises :class:`NatsUnavailable` when it cannot."""
    binary = shutil.which("nats-server")
    if binary is None:
        raise NatsUnavailable(
            "nats-server not found: install it with `apt-get install nats-server` "
            "(scripts/system-deps does)"
        )
    last_error: NatsUnavailable | None = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        server = NatsServer(
            binary, Path(tempfile.mkdtemp(prefix="remotehands-nats-")), _free_port()
        )
        try:
            server.start()
        except NatsUnavailable as err:
            last_error = err
            server.remove()
            continue
        atexit.register(server.remove)
        return server
    assert last_error is not None
    raise last_error
