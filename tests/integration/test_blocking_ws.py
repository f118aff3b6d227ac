"""The SDK's blocking WebSocket (reads on the caller's thread) against a real `websockets`
server on loopback: messages whole and in fragments, pings answered while a call waits, a close
seen before the next send, a refused upgrade; and the sync action socket reconnecting after the
server let an idle socket go."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from remotehands.client.blocking import BlockingWebSocket
from remotehands.client.socket import SyncActionSocket
from remotehands.errors import AuthError

pytestmark = pytest.mark.anyio

Handler = Callable[[ServerConnection], Awaitable[None]]
Start = Callable[[Handler], Awaitable[str]]


async def _refuse(connection: ServerConnection, request: Request) -> Response | None:
    if request.headers.get("Authorization") != "Bearer right":
        return connection.respond(401, "who are you?\n")
    return None


@pytest.fixture
async def server() -> AsyncIterator[Start]:
    servers = []

    async def start(handler: Handler) -> str:
        started = await serve(handler, "127.0.0.1", 0, process_request=_refuse, compression=None)
        servers.append(started)
        port = next(iter(started.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    yield start
    for started in servers:
        started.close()
        await started.wait_closed()


AUTH = {"Authorization": "Bearer right"}


def _send_close(ws: ServerConnection, code: int, reason: str) -> None:
    """The server's close frame written now (``close()`` would wait for the answer)."""
    ws.protocol.send_close(code, reason)
    ws.transport.write(b"".join(ws.protocol.data_to_send()))


async def test_messages_whole_and_in_fragments_and_a_ping_while_waiting(server: Start) -> None:
    pongs: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if message == "fragments":
                await ws.send(["one ", "two ", "three"])
            elif message == "ping first":
                # the client is waiting for its answer: it must answer the ping meanwhile
                pongs.append(await asyncio.wait_for(await ws.ping(), 5))
                await ws.send("after the ping")
            else:
                await ws.send(message)  # an echo, text or binary as it came

    url = await server(handler)

    def client() -> list[str | bytes]:
        conn = BlockingWebSocket.connect(url, headers=AUTH, timeout=5)
        got: list[str | bytes] = []
        try:
            for message in ("plain ✓", b"\x00\x01binary", "fragments", "ping first"):
                conn.send(message)
                got.append(conn.recv(timeout=5))
        finally:
            conn.close()
        assert conn.closed
        return got

    assert await asyncio.to_thread(client) == [
        "plain ✓", b"\x00\x01binary", "one two three", "after the ping"]  # fmt: skip
    assert len(pongs) == 1


async def test_a_close_while_idle_is_seen_before_the_next_send(server: Start) -> None:
    closing = threading.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("answered")
        _send_close(ws, 1001, "going away")
        closing.set()
        await ws.wait_closed()

    url = await server(handler)

    def client() -> ConnectionClosed:
        conn = BlockingWebSocket.connect(url, headers=AUTH, timeout=5)
        conn.send("hello")
        assert conn.recv(timeout=5) == "answered"
        assert closing.wait(5)
        with pytest.raises(ConnectionClosed) as caught:
            conn.send("too late")
        conn.close()
        return caught.value

    closed = await asyncio.to_thread(client)
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (
        1001, "going away")  # fmt: skip


async def test_a_refused_upgrade_and_no_answer_in_time(server: Start) -> None:
    quiet = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await quiet.wait()

    url = await server(handler)

    def client() -> None:
        with pytest.raises(InvalidStatus) as refused:
            BlockingWebSocket.connect(url, headers={"Authorization": "Bearer wrong"}, timeout=5)
        assert refused.value.response.status_code == 401
        conn = BlockingWebSocket.connect(url, headers=AUTH, timeout=5)
        conn.send("anyone?")
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.2)
        conn.close()

    try:
        await asyncio.to_thread(client)
    finally:
        quiet.set()


async def test_the_sync_action_socket_reconnects_after_the_server_let_it_go(server: Start) -> None:
    connections: list[int] = []
    let_go = threading.Event()

    async def handler(ws: ServerConnection) -> None:
        connections.append(id(ws))
        message = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": message["id"], "result": {"status": "ok"}}))
        if len(connections) == 1:  # the first socket is let go once it has answered
            _send_close(ws, 1001, "idle")
            let_go.set()
            await ws.wait_closed()
        else:
            async for again in ws:
                message = json.loads(again)
                await ws.send(json.dumps({"id": message["id"], "result": {"status": "ok"}}))

    url = await server(handler)
    base = "http://" + url.removeprefix("ws://").removesuffix("/ws")

    def client() -> None:
        socket = SyncActionSocket(base, lambda: "right", timeout=5)
        try:
            assert socket.call("mouse.move", {"x": 1, "y": 2}) == {"status": "ok"}
            assert let_go.wait(5)
            assert socket.call("mouse.move", {"x": 3, "y": 4}) == {"status": "ok"}
            assert socket.call("mouse.move", {"x": 5, "y": 6}) == {"status": "ok"}
        finally:
            socket.close()
        with pytest.raises(AuthError, match="refused the token"):
            SyncActionSocket(base, lambda: "wrong", timeout=5).call("mouse.move", {"x": 1, "y": 1})

    await asyncio.to_thread(client)
    assert len(connections) == 2
