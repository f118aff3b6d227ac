"""The stream primitives at the protocol level: the credit windows of transfers, the drop-oldest
queue, change detection, the stream messages on the wire, and a real agent link facing a peer
that breaks the flow control (a test WebSocket server speaking the link protocol by hand)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.framesource import FrameSource, changed_box
from remotehands.agent.link import AgentLink, Credential
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import DeviceOfflineError, ValidationError
from remotehands.protocol import link as wire
from remotehands.protocol.models import Bounds
from remotehands.protocol.streams import DropOldest, ReceiveWindow, SendWindow
from remotehands.testing.xapps import eventually

pytestmark = pytest.mark.anyio


def test_a_receive_window_refuses_a_chunk_past_its_credit() -> None:
    window = ReceiveWindow(1000)
    assert window.initial() == 1000
    window.receive(600, 0)
    window.receive(400, 600)
    with pytest.raises(ValidationError, match="exceeds the 0 bytes of credit"):
        window.receive(1, 1000)
    assert window.consumed(200) == 0  # under a quarter window: no credit message yet
    assert window.consumed(100) == 300  # a quarter or more: granted at once
    window.receive(300, 1000)
    with pytest.raises(ValidationError):
        window.receive(1, 1300)
    assert window.peak == 1000


def test_a_receive_window_refuses_a_chunk_out_of_order() -> None:
    window = ReceiveWindow(1000)
    window.initial()
    window.receive(100, 0)
    with pytest.raises(ValidationError, match="a transfer chunk at 50, expected one at 100"):
        window.receive(100, 50)
    window.receive(100, 100)  # the refused chunk took no credit and moved nothing
    assert (window.received, window.open) == (200, 800)


async def test_a_send_window_waits_for_credit_and_fails_on_error() -> None:
    window = SendWindow()
    window.grant(100)
    await window.spend(60, 1)
    waiting = asyncio.create_task(window.spend(60, 5))
    await asyncio.sleep(0)
    assert not waiting.done()
    window.grant(19)
    await asyncio.sleep(0)
    assert not waiting.done()  # 60 wanted, 59 open
    window.grant(1)
    await asyncio.wait_for(waiting, 1)
    assert window.sent == 120 and window.sent <= window.granted
    blocked = asyncio.create_task(window.spend(1000, 5))
    await asyncio.sleep(0)
    window.fail(DeviceOfflineError("gone"))
    with pytest.raises(DeviceOfflineError):
        await blocked
    with pytest.raises(ValidationError):
        window.grant(0)


async def test_drop_oldest_keeps_the_newest_and_ends_with_its_error() -> None:
    queue: DropOldest[int] = DropOldest(2)
    for i in range(5):
        queue.put(i)
    assert queue.dropped == 3 and len(queue) == 2
    assert [await queue.get(), await queue.get()] == [3, 4]
    queue.put(5)
    queue.close(DeviceOfflineError("link dropped"))
    queue.put(6)  # ignored once closed
    assert await queue.get() == 5
    with pytest.raises(DeviceOfflineError):
        await queue.get()
    ended: DropOldest[int] = DropOldest(1)
    ended.close()
    assert [item async for item in ended] == []


def test_changed_box_finds_the_changed_rectangle() -> None:
    a = np.zeros((100, 161, 4), np.uint8)  # odd width: compared pixel by pixel
    b = a.copy()
    assert changed_box(a, b) is None
    assert changed_box(None, b) == Bounds(x=0, y=0, width=161, height=100)
    b[40:43, 7:9, 1] = 9
    assert changed_box(a, b) == Bounds(x=7, y=40, width=2, height=3)
    c = np.zeros((64, 64, 4), np.uint8)
    d = c.copy()
    d[63, 63, 0] = 1  # even width: two pixels a word, the box covers the word
    assert changed_box(c, d) == Bounds(x=62, y=63, width=2, height=1)
    assert changed_box(c, np.zeros((32, 64, 4), np.uint8)) == Bounds(x=0, y=0, width=64, height=32)


async def test_a_frame_source_encodes_only_changes_and_stops_when_left() -> None:
    driver = FakeDriver(64, 48)
    source = FrameSource(driver, rate=100, linger_s=0.05)
    async with source.subscribe() as frames:
        first = await asyncio.wait_for(frames.__anext__(), 5)
        assert first.seq == 1 and first.data[:2] == b"\xff\xd8"
        await eventually(lambda: source.captures >= 10, timeout=5)
        assert source.frames == 1
        driver.fill((1, 2, 3))
        second = await asyncio.wait_for(frames.__anext__(), 5)
        assert second.seq == 2
    await eventually(lambda: not source.capturing, timeout=2)
    with pytest.raises(ValidationError):
        FrameSource(driver, rate=0)


def test_frame_and_chunk_messages_travel_as_binary_with_their_tags() -> None:
    frame = wire.encode({"type": "frame", "stream": 3, "seq": 9, "at": 1.5, "width": 2,
                         "height": 1, "format": "jpeg", "data": b"\xff\xd8jpeg"})  # fmt: skip
    assert isinstance(frame, bytes) and b"base64" not in frame
    decoded = wire.FrameMessage.model_validate(wire.decode(frame))
    assert (decoded.stream, decoded.seq, decoded.data) == (3, 9, b"\xff\xd8jpeg")
    chunk = wire.decode(wire.encode(wire.Chunk(transfer="t1", offset=5, data=b"abc")))
    assert chunk == {"type": "chunk", "transfer": "t1", "offset": 5, "data": b"abc"}
    with pytest.raises(Exception, match="quality"):
        wire.Watch(stream=1, quality=0)


# -- a real agent link against a peer that breaks the flow control ---------------------------------


class _Peer:
    """A test server: welcomes the agent, then lets the test talk to it message by message."""

    def __init__(self) -> None:
        self.ws: ServerConnection | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ready = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        hello = wire.decode(await ws.recv())
        assert hello["type"] == "hello"
        await ws.send(wire.encode(wire.Welcome(device_id="dev_x", heartbeat_interval_s=30)))
        self.ws = ws
        self.ready.set()
        async for frame in ws:
            await self.inbox.put(wire.decode(frame))

    async def send(self, message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(wire.encode(message))

    async def expect(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                message = await self.inbox.get()
                if message["type"] == kind:
                    return message


@pytest.fixture
async def peer() -> AsyncIterator[tuple[_Peer, AgentLink]]:
    test_peer = _Peer()
    async with serve(test_peer.handler, "127.0.0.1", 0, compression=None, max_size=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v1/agent/ws"
        link = AgentLink(Credential("http://x", "dev_x", "agt_x", url), Dispatcher(FakeDriver()),
                         driver_name="fake", device_type="desktop", hardware="hw")  # fmt: skip
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(test_peer.ready.wait(), 10)
            yield test_peer, link
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_agent_grants_a_window_and_refuses_a_chunk_past_it(
    peer: tuple[_Peer, AgentLink],
) -> None:
    server, link = peer
    transfers = link.transfers
    assert transfers is not None
    size = transfers.window * 3
    await server.send(wire.TransferOpen(transfer="t1", direction="upload", target="probe",
                                        name="x", size=size))  # fmt: skip
    accept = await server.expect("transfer_accept")
    credit = accept["window"]
    assert credit == transfers.window
    # Send exactly the credit, in chunks; more credit comes only as the sink consumes it.
    block = b"\x01" * (1 << 20)
    offset = 0
    granted_total = credit
    while offset < credit:
        await server.send({"type": "chunk", "transfer": "t1", "offset": offset, "data": block})
        offset += len(block)
    # Once the sink has it all, the whole window is open again, never more.
    while granted_total < offset + transfers.window:
        granted_total += (await server.expect("credit"))["bytes"]
    assert granted_total - offset == transfers.window
    assert transfers.peak_held <= transfers.window
    # Now a chunk larger than what is open: the agent cancels the transfer, naming why.
    await server.send({"type": "chunk", "transfer": "t1", "offset": offset,
                       "data": b"\x02" * (granted_total - offset + 1)})  # fmt: skip
    cancel = await server.expect("transfer_cancel")
    assert cancel["transfer"] == "t1" and cancel["error"]["error"] == "invalid"
    assert "exceeds" in cancel["error"]["details"]
    await eventually(lambda: not transfers.active, timeout=5)


async def test_a_download_from_the_agent_never_outruns_its_credit(
    peer: tuple[_Peer, AgentLink],
) -> None:
    server, _ = peer
    total, window = 6 << 20, 2 << 20
    await server.send(wire.TransferOpen(transfer="d1", direction="download", target="probe",
                                        name=str(total), window=window))  # fmt: skip
    assert (await server.expect("transfer_accept"))["size"] == total
    received = 0
    digest = hashlib.sha256()
    granted = window
    while received < total:
        chunk = await server.expect("chunk")
        received += len(chunk["data"])
        digest.update(chunk["data"])
        assert received <= granted  # the agent never sent past the credit
        if received == granted and received < total:
            await server.send(wire.Credit(transfer="d1", bytes=window))
            granted += window
    assert received == total
