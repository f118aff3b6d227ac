"""A WebSocket client that sends and receives on the calling thread.

websockets' own sync client reads its socket on a thread of its own and hands each message to
the caller: a thread wake-up for every answer, which on loopback is a good part of a small
action's round trip. Here the socket is read by the caller, while it waits for an answer; what
arrived meanwhile (a ping, a close) is read before the next message is sent. The protocol is
websockets' own sans-I/O one, so framing, masking, answering pings and the closing handshake
are the library's; only the socket is ours.

Errors are websockets' (:class:`~websockets.exceptions.InvalidStatus` for a refused upgrade,
:class:`~websockets.exceptions.ConnectionClosed` for a closed or broken connection), plus
:class:`TimeoutError` and :class:`OSError` from the socket, as with its sync client.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Final, NoReturn

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["BlockingWebSocket"]

_READ_SIZE: Final = 65536
_CLOSE_TIMEOUT_S: Final = 2.0


class BlockingWebSocket:
    """One client connection; use it from one thread at a time."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._fragments: list[bytes] = []
        self._fragment_text = False

    @classmethod
    def connect(
        cls, url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0
    ) -> BlockingWebSocket:
        """Open ``url`` (``ws://`` or ``wss://``, the system's trusted CAs) within ``timeout``
        seconds, sending ``headers`` with the upgrade request."""
        uri = parse_uri(url)
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=uri.host)
            protocol = ClientProtocol(uri, max_size=None)
            request = protocol.connect()
            for name, value in (headers or {}).items():
                request.headers[name] = value
            protocol.send_request(request)
            conn = cls(sock, protocol)
            conn._flush()
            while protocol.state is State.CONNECTING:
                conn._read(deadline)
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
            if protocol.state is not State.OPEN:
                raise conn._closed()
            conn._take(protocol.events_received())
        except BaseException:
            sock.close()
            raise
        return conn

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (the closing handshake done, or broken)."""
        return self._protocol.state is State.CLOSED

    # -- messages --------------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send one message: text for ``str``, binary for ``bytes``."""
        self._poll()  # a close (or a ping) that came while we were idle is seen first
        if self._protocol.state is not State.OPEN:
            raise self._closed()
        try:
            if isinstance(message, str):
                self._protocol.send_text(message.encode())
            else:
                self._protocol.send_binary(message)
        except InvalidState as err:
            raise self._closed() from err
        self._flush()

    def recv(self, timeout: float) -> str | bytes:
        """The next message, waiting at most ``timeout`` seconds (:class:`TimeoutError`)."""
        deadline = time.monotonic() + timeout
        while not self._messages:
            if self._protocol.state is not State.OPEN:  # a client gets nothing after a close
                raise self._closed()
            self._read(deadline)
        return self._messages.popleft()

    def close(self) -> None:
        """The closing handshake (waiting a little for the peer's answer), then the socket."""
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close()
                self._flush()
                deadline = time.monotonic() + _CLOSE_TIMEOUT_S
                while not self.closed:
                    self._read(deadline)
        except (OSError, ConnectionClosed, TimeoutError):
            pass  # closing anyway
        finally:
            self._sock.close()

    # -- the socket ------------------------------------------------------------------------

    def _flush(self) -> None:
        data = b"".join(self._protocol.data_to_send())
        if not data:
            return
        try:
            self._sock.sendall(data)
        except OSError as err:
            self._broken(err)

    def _read(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer in time")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(_READ_SIZE)
        except TimeoutError:
            raise
        except OSError as err:
            self._broken(err)
        self._feed(data)

    def _poll(self) -> None:
        """Read what is already there, without waiting."""
        self._sock.setblocking(False)
        try:
            data = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except OSError as err:
            self._broken(err)
        finally:
            self._sock.setblocking(True)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        self._take(self._protocol.events_received())
        self._flush()  # pongs, the answer to a close

    def _take(self, events: Iterable[object]) -> None:
        for event in events:
            if not isinstance(event, Frame):
                continue  # the upgrade's response
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._fragment_text = event.opcode is Opcode.TEXT
                self._fragments = [bytes(event.data)]
            elif event.opcode is Opcode.CONT:
                self._fragments.append(bytes(event.data))
            else:
                continue  # ping, pong, close: the protocol answered them
            if event.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                self._messages.append(data.decode() if self._fragment_text else data)

    def _closed(self) -> ConnectionClosed:
        """The error for a connection the peer closed or broke: nothing more is read from it."""
        if self._protocol.state is not State.CLOSED:
            self._protocol.receive_eof()
        if self._protocol.state is State.CLOSED:
            return self._protocol.close_exc
        return ConnectionClosed(self._protocol.close_rcvd, self._protocol.close_sent)

    def _broken(self, err: OSError) -> NoReturn:
        with contextlib.suppress(OSError):
            self._sock.close()
        raise self._closed() from err
