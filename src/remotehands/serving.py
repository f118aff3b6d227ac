"""Serving ASGI apps: one ``HOST:PORT`` parser and one uvicorn start-and-wait helper.

The agent's faces, the fleet server's CLI, the demo and the tests all listen the same way: parse
the address once (:func:`parse_listen`), start uvicorn in the running event loop, wait until it
accepts connections, and stop it when the block ends (:func:`serve_http`). It sits below the
agent, the server and the client in the layers, and imports nothing of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from remotehands.errors import ConfigError

__all__ = [
    "BEFORE_SHUTDOWN_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "SHUTDOWN_TIMEOUT_S",
    "STARTUP_TIMEOUT_S",
    "GracefulServer",
    "HeaderTimeoutProtocol",
    "KeepaliveExemptProtocol",
    "bound_address",
    "check_trusted_proxies",
    "parse_listen",
    "proxy_options",
    "serve_http",
    "websocket_protocol",
]

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
"""How long :func:`serve_http` waits for uvicorn to accept connections."""
SHUTDOWN_TIMEOUT_S = 5
"""How long open connections get to finish when a :func:`serve_http` block ends."""


HEADER_TIMEOUT_S = 10.0
"""How long a client may take to send a request's headers (a WebSocket's upgrade included)."""


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a bound on the time to send a request's headers.

    uvicorn keeps a connection whose request line or headers never end for as long as the
    client likes; hundreds of such half-open requests (WebSocket upgrades among them) would
    hold as many sockets. This closes a connection whose headers are not complete within
    :data:`HEADER_TIMEOUT_S` of its opening or of its next request's first byte.
    """

    header_timeout_s: float = HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = asyncio.get_running_loop().call_later(
                self.header_timeout_s, self._headers_too_slow
            )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)


DIRECT_FRAMES = "remotehands.direct_frames"
"""The ASGI extension (in a WebSocket's ``scope["extensions"]``) of :func:`websocket_protocol`'s
connections: ``{"deliver": fn, "send": send_now, "reading": reading}``. ``fn(on_frame)`` makes
the connection hand each message (``str`` or ``bytes``) to ``on_frame`` as it is read, and
``fn(None)`` stops it. ``send_now(message)`` writes a message (``str``: text, ``bytes``: binary)
at once and returns True when a ``websocket.send`` would not wait (the socket's buffer is not
full); otherwise it writes nothing and returns False (then ``websocket.send`` it). It raises
:class:`ConnectionError` once the connection is closed. ``reading(False)`` stops reading the
socket (back-pressure for an app that keeps messages it cannot handle yet) and
``reading(True)`` starts again."""


class KeepaliveExemptProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, without its keepalive ping on the paths in
    :attr:`exempt_paths`: WebSockets that carry a heartbeat of their own (the agent link: the
    agent beats, the server closes a silent link), where a ping every 20 s per connection is a
    second keepalive, a timer and a few hundred wakeups a second at ten thousand links."""

    exempt_paths: frozenset[str] = frozenset()
    _on_frame: Callable[[str | bytes], None] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            # an ASGI extension: the app may take each message as it is read (see _deliver_to),
            # and see whether a send would wait (uvicorn clears the Event while writing pauses)
            self.scope["extensions"][DIRECT_FRAMES] = {
                "deliver": self._deliver_to,
                "send": self._send_now,
                "reading": self._reading,
            }

    def _reading(self, on: bool) -> None:
        """Pause or resume reading the socket (uvicorn's own flag, which its ``receive`` and
        :meth:`_deliver_to` respect)."""
        if on == self.read_paused and not self.transport.is_closing():
            self.read_paused = not on
            if on:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _send_now(self, message: str | bytes) -> bool:
        """Write ``message`` unless that would wait (see :data:`DIRECT_FRAMES`): what uvicorn's
        ``websocket.send`` does, without a coroutine and the app's ``send`` wrappers."""
        if self.disconnected or self.close_sent:
            raise ConnectionError("the WebSocket is closed")
        if not self.writable.is_set() or not self.handshake_complete:
            return False
        try:
            if isinstance(message, str):
                self.conn.send_text(message.encode())
            else:
                self.conn.send_binary(message)
        except InvalidState as err:
            raise ConnectionError("the WebSocket is closed") from err
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def _deliver_to(self, on_frame: Callable[[str | bytes], None] | None) -> None:
        """From now on hand each message to ``on_frame`` as it is read, instead of queueing it
        for the app's ``receive`` (None: queue again). What is queued already goes first; the
        disconnect still comes through ``receive``. No queue, no wake-up of the app's task, no
        pause and resume of the socket per message: a link's heartbeats and replies cost less
        than half as many system calls."""
        self._on_frame = on_frame
        if on_frame is None:
            return
        kept: list[Any] = []
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if message["type"] == "websocket.receive":
                text, data = message.get("text"), message.get("bytes")
                on_frame(text if text is not None else bytes(data or b""))
            else:
                kept.append(message)
        for message in kept:
            self.queue.put_nowait(message)
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()

    def send_receive_event_to_app(self) -> None:
        on_frame = self._on_frame
        if on_frame is None or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.curr_msg_data_type == "text":
            try:
                frame: str | bytes = bytes(data).decode()
            except UnicodeDecodeError:
                logger.warning("a WebSocket message is not UTF-8 text: closing (1007)")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            frame = bytes(data)
        try:
            on_frame(frame)
        except Exception:  # the app's handler must not break the connection's reading
            logger.exception("a WebSocket message's handler failed")

    def start_keepalive(self) -> None:
        if self.scope["path"] in self.exempt_paths:
            return
        super().start_keepalive()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if (
            message["type"] == "websocket.accept"
            and self.handshake_complete
            and self.scope["path"] in self.exempt_paths
        ):
            # a long-lived link: the upgrade request and its response (their headers, a few
            # kilobytes) are of no use once the handshake is done (uvicorn reads them only
            # until the accept). websockets' parser holds on to the request for the
            # connection's life, so its headers are emptied in place to be freed.
            self.request.headers.clear()
            self.response.headers.clear()
            del self.request, self.response
        # uvicorn leaves a refusal by HTTP response (503 to an agent told to come back later)
        # marked as an unfinished handshake and logs an error for each: in a reconnection
        # storm, thousands of false errors
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True


def websocket_protocol(keepalive_exempt: Sequence[str] = ()) -> type[KeepaliveExemptProtocol]:
    """The WebSocket protocol class to give uvicorn (``ws=``): no keepalive ping on the paths
    ``keepalive_exempt``, uvicorn's ping everywhere else."""
    return type(
        "WebSocketProtocol",
        (KeepaliveExemptProtocol,),
        {"exempt_paths": frozenset(keepalive_exempt)},
    )


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


def check_trusted_proxies(proxies: Sequence[str]) -> list[str]:
    """The proxies (addresses or CIDR networks, ``10.0.0.0/8``) in canonical form; a
    :class:`ConfigError` names the first one that is neither."""
    networks = []
    for proxy in proxies:
        try:
            networks.append(str(ipaddress.ip_network(proxy.strip(), strict=False)))
        except ValueError as err:
            raise ConfigError(
                f"--trusted-proxy {proxy!r} is not an address or a CIDR network "
                "(e.g. 10.0.0.5 or 10.0.0.0/8)"
            ) from err
    return networks


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's options for ``X-Forwarded-For``/``-Proto``: honoured only from
    ``trusted_proxies``; with none they are ignored altogether (uvicorn would otherwise trust
    them from 127.0.0.1, and anything on the machine could pose as any client)."""
    networks = check_trusted_proxies(trusted_proxies)
    return {"proxy_headers": bool(networks), "forwarded_allow_ips": networks or ""}


BEFORE_SHUTDOWN_TIMEOUT_S = 10.0
"""The longest a :class:`GracefulServer`'s ``before_shutdown`` may take."""


class GracefulServer(uvicorn.Server):
    """uvicorn's server, letting the app speak to its open connections before they close.

    On shutdown uvicorn closes every WebSocket itself (code 1012, no reason) before it runs the
    app's lifespan shutdown, so whatever an app would tell its peers from its shutdown hook (the
    fleet server tells each agent when to come back) meets closed sockets. This server stops
    accepting connections, then awaits ``before_shutdown`` (within
    :data:`BEFORE_SHUTDOWN_TIMEOUT_S`; a failure is logged, the shutdown goes on), and only then
    lets uvicorn close what is left and run the lifespan shutdown.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        before_shutdown: Callable[[], Awaitable[None]] | None = None,
        after_startup: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.before_shutdown = before_shutdown
        self.after_startup = after_startup
        """Called once the server has started (the app's lifespan started, sockets listen)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start, then :attr:`after_startup`."""
        await super().startup(sockets)
        if self.started and self.after_startup is not None:
            self.after_startup()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, run ``before_shutdown``, then uvicorn's own shutdown."""
        if self.before_shutdown is not None and not self.force_exit:
            for server in self.servers:
                server.close()  # nobody new arrives while the app says goodbye
            try:
                async with asyncio.timeout(BEFORE_SHUTDOWN_TIMEOUT_S):
                    await self.before_shutdown()
            except Exception:
                logger.exception("the app's last words before the shutdown failed")
        await super().shutdown(sockets)


class _Server(GracefulServer):
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
    trusted_proxies: Sequence[str] = (),
    ssl: Mapping[str, Any] | None = None,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    before_shutdown: Callable[[], Awaitable[None]] | None = None,
    keepalive_exempt: Sequence[str] = (),
) -> AsyncIterator[uvicorn.Server]:
    """Serve an ASGI app on ``listen`` (or on the bound socket ``sock``) until the block ends;
    yields once it accepts requests.

    Port 0 picks a free port: read it with :func:`bound_address`. ``lifespan`` runs the app's
    startup and shutdown; ``websockets`` serves WebSocket routes (without compression: the
    agent link and live view carry images). A ``sock`` stays open: its owner closes it.
    Forwarding headers count only from ``trusted_proxies`` (see :func:`proxy_options`);
    ``ssl`` holds uvicorn's ``ssl_certfile``/``ssl_keyfile`` to serve HTTPS. A client gets
    ``header_timeout_s`` to send a request's headers (see :class:`HeaderTimeoutProtocol`).
    ``before_shutdown`` runs when the block ends, before the open connections are closed (see
    :class:`GracefulServer`). WebSockets on the paths ``keepalive_exempt`` get no keepalive
    ping (see :class:`KeepaliveExemptProtocol`).
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
        http=type("Protocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s}),
        ws=websocket_protocol(keepalive_exempt) if websockets else "none",
        ws_per_message_deflate=False,
        # bounds the wait at the end of the block: open connections get this long to finish
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        **proxy_options(trusted_proxies),
        **(ssl or {}),
    )
    server = _Server(config, before_shutdown=before_shutdown)
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
