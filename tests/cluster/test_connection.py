"""A replica's NATS requests (:meth:`NatsConnection.request`) on a real nats-server: each reply
reaches its own asker, nobody listening fails at once, a silent listener times out, and a lost
connection fails what waits then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from remotehands.server.cluster.connection import NatsConnection, NatsLost
from tests.natsd import NatsServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def connection(nats_url: str) -> AsyncIterator[NatsConnection]:
    async with NatsConnection(nats_url, "asker") as opened:
        yield opened


@pytest.fixture
async def peer(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


async def _subscribe(peer: Client, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
    """Subscribe ``peer``, and return once the server has the subscription. nats-py's flush
    writes its PING ahead of what is still pending: the SUB may follow the PONG, so a second
    flush comes after it."""
    await peer.subscribe(subject, cb=cb)
    await peer.flush()
    await peer.flush()


async def test_concurrent_requests_each_get_their_own_reply(
    connection: NatsConnection, peer: Client
) -> None:
    async def echo(msg: Msg) -> None:
        if msg.data == b"slow":  # answered after the others: replies out of order
            await asyncio.sleep(0.05)
        await msg.respond(b"re:" + msg.data)

    await _subscribe(peer, "rh.test.echo", cb=echo)
    asks = [b"slow", *(str(i).encode() for i in range(50))]
    replies = await asyncio.gather(
        *(connection.request("rh.test.echo", data, 5.0) for data in asks)
    )
    assert replies == [b"re:" + data for data in asks]


async def test_nobody_listening_fails_at_once(connection: NatsConnection) -> None:
    started = time.monotonic()
    with pytest.raises(nats.errors.NoRespondersError):
        await connection.request("rh.test.nobody", b"?", 10.0)
    assert time.monotonic() - started < 5  # told by NATS, not the timeout


async def test_a_silent_listener_times_out_and_a_late_reply_is_dropped(
    connection: NatsConnection, peer: Client
) -> None:
    heard: list[Msg] = []

    async def keep(msg: Msg) -> None:
        heard.append(msg)

    await _subscribe(peer, "rh.test.silent", cb=keep)
    with pytest.raises(TimeoutError):
        await connection.request("rh.test.silent", b"?", 0.2)
    assert len(heard) == 1
    await heard[0].respond(b"too late")  # nobody waits for it: dropped, nothing breaks

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await _subscribe(peer, "rh.test.echo2", cb=echo)
    assert await connection.request("rh.test.echo2", b"next", 5.0) == b"next"


async def test_a_lost_connection_fails_the_waiting_request_then(
    connection: NatsConnection, peer: Client, nats_server: NatsServer
) -> None:
    heard = asyncio.Event()

    async def never(_: Msg) -> None:
        heard.set()

    await _subscribe(peer, "rh.test.never", cb=never)
    waiting = asyncio.create_task(connection.request("rh.test.never", b"?", 60.0))
    await asyncio.wait_for(heard.wait(), 10)
    lost_at = time.monotonic()
    nats_server.stop()
    with pytest.raises(NatsLost):
        await asyncio.wait_for(waiting, 15)
    assert time.monotonic() - lost_at < 10  # the lost connection, not the request's 60 s
    with pytest.raises(NatsLost):  # while away: at once
        await connection.request("rh.test.never", b"?", 60.0)
