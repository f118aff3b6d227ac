"""Running an agent: pick the driver, serve the native face, keep the link to the server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.link import AgentLink, hardware_id, load_or_enroll
from remotehands.drivers.base import Driver
from remotehands.errors import ConfigError

__all__ = ["DRIVERS", "AgentOptions", "make_driver", "parse_listen", "run_agent", "serve_http"]

log = logging.getLogger(__name__)

# driver name -> import string; imported only when chosen, so a role pulls only its extras.
DRIVERS: dict[str, str] = {
    "x11": "remotehands.drivers.x11.driver:X11Driver",
    "fake": "remotehands.drivers.fake:FakeDriver",
}

DEFAULT_LISTEN = "127.0.0.1:8082"


@dataclass
class AgentOptions:
    """Everything ``remotehands agent`` can be told."""

    driver: str = "x11"
    display: str | None = None
    listen: str | None = None
    password: str | None = None
    password_file: Path | None = None
    pam: bool = False
    server: str | None = None
    token: str | None = None
    name: str | None = None
    state_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")
        ) / "remotehands"
    )  # fmt: skip
    token_ttl_s: int = 28_800
    hardware_id: str | None = None
    """Stable id of the device; by default derived from the machine, driver and display."""


def make_driver(name: str, display: str | None = None) -> Driver:
    """Build a driver by name; an unknown name is a :class:`ConfigError` listing the known ones."""
    target = DRIVERS.get(name)
    if target is None:
        raise ConfigError(f"unknown driver {name!r}: choose one of {', '.join(sorted(DRIVERS))}")
    module_name, attr = target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise ConfigError(
            f"the {name} driver needs packages that are not installed ({err.name}): "
            "install remotehands[agent]"
        ) from err
    if name == "x11":
        driver: Driver = cls(display=display)
    else:
        driver = cls()
    return driver


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8082`` for IPv6) into its parts, with a clear error."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"invalid listen address {text!r}: use HOST:PORT, e.g. 127.0.0.1:8082")
    return host.strip("[]") or "127.0.0.1", int(port)


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
    app: Any, listen: str, *, lifespan: bool = False, websockets: bool = False
) -> AsyncIterator[uvicorn.Server]:
    """Serve an ASGI app on ``listen`` until the block ends; yields once it accepts requests.

    Port 0 picks a free port: read it with :func:`bound_address`. ``lifespan`` runs the app's
    startup and shutdown; ``websockets`` serves WebSocket routes (without compression: the
    agent link and live view carry images).
    """
    host, port = parse_listen(listen)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on" if lifespan else "off",
        access_log=False,
        ws="websockets-sansio" if websockets else "none",
        ws_per_message_deflate=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise ConfigError(f"the HTTP server on {listen} stopped as it started")
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
    return f"{host}:{port}"


async def run_agent(options: AgentOptions, started: asyncio.Event | None = None) -> None:
    """Run until cancelled: the native face (standalone, or with ``--listen``) and the link."""
    listen = options.listen or (None if options.server else DEFAULT_LISTEN)
    driver = make_driver(options.driver, options.display)  # an unknown driver is said first
    tokens = None
    if listen:
        check = password_check(password=options.password, password_file=options.password_file,
                               pam=options.pam)  # fmt: skip
        tokens = TokenStore(check, ttl_s=options.token_ttl_s)
    hardware = options.hardware_id or hardware_id(
        f"|{options.driver}|{options.display or os.environ.get('DISPLAY', '')}"
    )
    async with driver:
        dispatcher = Dispatcher(driver)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if listen and tokens is not None:
                    server = await stack.enter_async_context(
                        serve_http(create_native_app(dispatcher, tokens), listen)
                    )
                    log.warning("native API on http://%s", bound_address(server))
                link_task = None
                if options.server:
                    credential = await load_or_enroll(
                        options.server, options.token, state_dir=options.state_dir,
                        hardware=hardware, device_type="desktop", name=options.name,
                    )  # fmt: skip
                    log.warning("enrolled as %s with %s", credential.device_id, options.server)
                    link = AgentLink(credential, dispatcher, driver_name=driver.kind,
                                     device_type="desktop", hardware=hardware)  # fmt: skip
                    link_task = asyncio.create_task(link.run())
                if started is not None:
                    started.set()
                if link_task is not None:
                    await link_task
                else:
                    await asyncio.Event().wait()
        finally:
            await dispatcher.aclose()
