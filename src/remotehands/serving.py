"""Serving ASGI apps: one ``HOST:PORT`` parser and one uvicorn start-and-wait helper.

The agent's faces, the fleet server's CLI, the demo and the tests all listen the same way: parse
the address once (:func:`parse_listen`), start uvicorn in the running event loop, wait until it
accepts connections, and stop it when the block ends (:func:`serve_http`). It sits below the
agent, the server and the client in the layers, and imports nothing of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

from remotehands.errors import ConfigError

__all__ = ["SHUTDOWN_TIMEOUT_S", "STARTUP_TIMEOUT_S", "bound_address", "parse_listen", "serve_http"]

STARTUP_TIMEOUT_S = 30.0
"""How long :func:`serve_http` waits for uvicorn to accept connections."""
SHUTDOWN_TIMEOUT_S = 5
"""How long open connections get to finish when a :func:`serve_http` block ends."""


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8082`` for IPv6) into its host and port.

    Raises :class:`ConfigError` when it is not an address a server can bind.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"listen address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen port {port} is outside 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (the CLI, a test, the demo) and
    reports a failed start as an error rather than exiting the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:
            # uvicorn logged why (address in use, no permission) and asked to exit: a
            # SystemExit inside a task would stop the whole event loop
            raise ConfigError(
                f"could not listen on {self.config.host}:{self.config.port}: see the line "
                "above; choose another address with --listen"
            ) from None


@contextlib.asynccontextmanager
async def serve_http(
    app: Any,
    listen: str | None = None,
    *,
    sock: socket.socket | None = None,
    lifespan: bool = False,
    websockets: bool = False,
    log_level: str = "warning",
) -> AsyncIterator[uvicorn.Server]:
    """Serve an ASGI app on ``listen`` (or on the bound socket ``sock``) until the block ends;
    yields once it accepts requests.

    Port 0 picks a free port: read it with :func:`bound_address`. ``lifespan`` runs the app's
    startup and shutdown; ``websockets`` serves WebSocket routes (without compression: the
    agent link and live view carry images). A ``sock`` stays open: its owner closes it.
    """
    if (listen is None) == (sock is None):
        raise ValueError("give serve_http one of listen or sock")
    host, port = parse_listen(listen) if listen is not None else ("127.0.0.1", 0)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on" if lifespan else "off",
        access_log=False,
        ws="websockets-sansio" if websockets else "none",
        ws_per_message_deflate=False,
        # bounds the wait at the end of the block: open connections get this long to finish
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:  # uvicorn offers no event to wait on
                if task.done():
                    task.result()
                    raise ConfigError(f"the HTTP server on {listen or 'its socket'} stopped "
                                      "as it started")  # fmt: skip
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, ConfigError):
            await task


def bound_address(server: uvicorn.Server) -> str:
    """``host:port`` a started server really listens on."""
    sock = server.servers[0].sockets[0]
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
