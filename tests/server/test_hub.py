"""The hub on its own: built from what it uses (a database, an event bus, its timing and its
clocks), with no app around it, and silence measured by the clock it is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remotehands.errors import DeviceOfflineError
from remotehands.protocol.link import Hello, decode, encode
from remotehands.server.db.engine import Database
from remotehands.server.db.models import Device, new_id
from remotehands.server.events import InProcessEventBus
from remotehands.server.link.hub import CLOSE_GOING_AWAY, LinkHub, LinkIdentity
from remotehands.server.router import InProcessRouter
from tests.server.conftest import FakeClock, FakeMonotonic

pytestmark = pytest.mark.anyio


class MemoryTransport:
    """A link's socket as two in-memory queues: what the agent sends, what the hub sent."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def send(self, frame: str | bytes) -> None:
        if self.closed.done():
            raise DeviceOfflineError("closed")
        await self.sent.put(frame)

    async def receive(self) -> str | bytes | None:
        return await self.incoming.get()

    def send_now(self, frame: str | bytes) -> bool:
        return False  # unknown: the hub takes its lock and deadline and awaits send()

    def deliver(self, on_frame: object) -> bool:
        return False  # frames come through receive()

    async def close(self, code: int, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(code)
        self.incoming.put_nowait(None)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}") as db:
        yield db


async def _device(db: Database, clock: FakeClock) -> str:
    device_id = new_id("dev")
    async with db.session() as session:
        session.add(
            Device(id=device_id, name="d", tags=["lab"], status="offline", device_type="sim",
                   driver="sim", agent_version="0", capabilities=[], screens=[],
                   hardware_id="hw", credential_hash=new_id("cred"), created_at=clock())
        )  # fmt: skip
        await session.commit()
    return device_id


async def test_silence_is_measured_by_the_given_clock(database: Database) -> None:
    clock, monotonic = FakeClock(), FakeMonotonic()
    device_id = await _device(database, clock)
    async with (
        InProcessEventBus() as events,
        LinkHub(db=database, events=events, heartbeat_interval_s=10.0, offline_after_s=30.0,
                clock=monotonic, now=clock) as hub,
    ):  # fmt: skip
        router = InProcessRouter(hub)
        transport = MemoryTransport()
        hello = Hello(device_id=device_id, agent_version="0", driver="sim", device_type="sim",
                      capabilities=[], hardware_id="hw")  # fmt: skip
        identity = LinkIdentity(device_id, "d", ["lab"])
        with events.subscribe(
            types=("device.online", "device.health", "device.offline")
        ) as subscription:
            serving = asyncio.create_task(hub.serve(identity, hello, transport))
            welcome = decode(await asyncio.wait_for(transport.sent.get(), 5))
            assert welcome["type"] == "welcome"
            assert welcome["heartbeat_interval_s"] == 10.0
            assert router.is_online(device_id)

            # Real time passes, the clock does not: nothing is silent.
            monotonic.advance(29.0)
            assert await hub.close_silent() == []
            # A heartbeat at 29 s starts the count again.
            health = {"uptime_seconds": 1, "cpu_percent": 1, "memory_percent": 1}
            await transport.incoming.put(encode({"type": "heartbeat", "health": health}))
            kinds = [(await asyncio.wait_for(subscription.get(), 5) or {}).get("type")
                     for _ in range(2)]  # fmt: skip
            assert kinds == ["device.online", "device.health"]  # the heartbeat was taken
            monotonic.advance(29.0)
            assert await hub.close_silent() == []
            monotonic.advance(1.0)
            assert await hub.close_silent() == [device_id]
            assert await asyncio.wait_for(transport.closed, 5) == CLOSE_GOING_AWAY
            await asyncio.wait_for(serving, 5)
            offline = await asyncio.wait_for(subscription.get(), 5)
        assert offline is not None
        assert offline["type"] == "device.offline"
        assert offline["tags"] == ["lab"]
        assert not router.is_online(device_id)
        with pytest.raises(DeviceOfflineError):
            await router.request(device_id, "screens", {}, 5)
    async with database.session() as session:
        row = await session.get(Device, device_id)
    assert row is not None and row.status == "offline" and row.last_seen == clock()


class GatedTransport(MemoryTransport):
    """A transport whose first send (the welcome) waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.gate = asyncio.Event()

    async def send(self, frame: str | bytes) -> None:
        self.sending.set()
        await self.gate.wait()
        await super().send(frame)


async def test_the_stale_sweep_spares_a_link_being_attached(database: Database) -> None:
    """Between writing "online" and holding the link (the welcome on its way), the device is
    not stale, however long the welcome takes on a loaded machine."""
    clock, monotonic = FakeClock(), FakeMonotonic()
    device_id = await _device(database, clock)
    async with (
        InProcessEventBus() as events,
        LinkHub(db=database, events=events, heartbeat_interval_s=10.0, offline_after_s=30.0,
                clock=monotonic, now=clock) as hub,
    ):  # fmt: skip
        transport = GatedTransport()
        hello = Hello(device_id=device_id, agent_version="0", driver="sim", device_type="sim",
                      capabilities=[], hardware_id="hw")  # fmt: skip
        serving = asyncio.create_task(
            hub.serve(LinkIdentity(device_id, "d", ["lab"]), hello, transport)
        )
        await asyncio.wait_for(transport.sending.wait(), 5)  # online written, welcome pending
        clock.advance(3600)
        assert await hub.sweep_stale() == []
        transport.gate.set()
        welcome = decode(await asyncio.wait_for(transport.sent.get(), 5))
        assert welcome["type"] == "welcome" and InProcessRouter(hub).is_online(device_id)
        await transport.close(CLOSE_GOING_AWAY, "test over")
        await asyncio.wait_for(serving, 5)
    async with database.session() as session:
        row = await session.get(Device, device_id)
    assert row is not None and row.status == "offline"
