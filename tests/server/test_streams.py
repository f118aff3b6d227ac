"""Streams on the agent link, through a real server on loopback and a real agent link in this
process on a FakeDriver: watching a screen (shared link stream, drop-oldest per consumer,
capture only while watched, nothing sent for an unchanged screen), the screen WebSocket route,
and chunked transfers (both directions, flow control, cancellation from either side)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import simplejpeg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.framesource import FrameSources
from remotehands.agent.link import AgentLink, Credential
from remotehands.agent.transfers import PROBE, UploadSink, probe_pattern
from remotehands.drivers.base import FrameArray
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import DeviceError, DeviceOfflineError, ValidationError
from remotehands.protocol.models import Bounds
from remotehands.protocol.streams import Frame
from remotehands.server.link.hub import AgentLink as ServerLink
from remotehands.server.router import DeviceRouter
from remotehands.testing.xapps import eventually
from tests.server.link_harness import LiveFleet, running_fleet

pytestmark = pytest.mark.anyio


class AnimatedDriver(FakeDriver):
    """A FakeDriver whose screen changes on every grab while :attr:`animate` is on."""

    animate = True

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        if self.animate:
            n = len(self.calls)
            self.fill((n % 256, (n // 256) % 256, 128), Bounds(x=0, y=0, width=64, height=64))
        return await super().grab(screen_id, region)

    def grabs(self) -> int:
        return self.call_names().count("grab")


@dataclass
class Linked:
    fleet: LiveFleet
    driver: AnimatedDriver
    link: AgentLink
    device_id: str

    @property
    def router(self) -> DeviceRouter:
        return self.fleet.services.router

    @property
    def server_link(self) -> ServerLink:
        link = self.fleet.services.hub.get(self.device_id)
        assert link is not None
        return link


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[Linked]:
    async with running_fleet(tmp_path) as fleet:
        [device] = await fleet.enroll(tags=["lab"])
        credential = Credential(fleet.base_url, device.device_id, device.credential, fleet.ws_url)
        driver = AnimatedDriver(320, 200)
        driver.animate = False
        dispatcher = Dispatcher(driver, frames=FrameSources(driver, linger_s=0.2))
        link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                         hardware="hw-streams", backoff_base_s=0.05,
                         backoff_cap_s=0.2)  # fmt: skip
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(link.connected.wait(), 20)
            await eventually(lambda: fleet.services.hub.get(device.device_id), timeout=10)
            yield Linked(fleet, driver, link, device.device_id)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await dispatcher.aclose()


async def _take(frames: AsyncIterator[Frame], n: int, timeout: float = 10) -> list[Frame]:
    got: list[Frame] = []
    async with asyncio.timeout(timeout):
        async for frame in frames:
            got.append(frame)
            if len(got) == n:
                break
    return got


# -- watching a screen ---------------------------------------------------------------------------


async def test_a_slow_consumer_drops_frames_while_a_fast_one_gets_every_frame(
    linked: Linked,
) -> None:
    linked.driver.animate = True
    source = linked.link.frames.get(0) if linked.link.frames else None
    assert source is not None
    slow_may_read = asyncio.Event()
    fast_seqs: list[int] = []
    slow_seqs: list[int] = []

    async with (
        linked.router.watch(linked.device_id) as fast,
        linked.router.watch(linked.device_id) as slow,
    ):
        # Two consumers, one link stream, one subscriber at the agent.
        assert len(linked.server_link.watches.streams) == 1
        await eventually(lambda: source.consumers == 1, timeout=5)

        async def read_fast() -> None:
            async for frame in fast:
                fast_seqs.append(frame.seq)
                if len(fast_seqs) >= 40:
                    return

        async def read_slow() -> None:
            async for frame in slow:
                slow_seqs.append(frame.seq)
                slow_may_read.clear()
                await slow_may_read.wait()  # stuck until the test lets it read one more

        slow_task = asyncio.create_task(read_slow())
        async with asyncio.timeout(20):
            await read_fast()
        slow_may_read.set()
        await eventually(lambda: len(slow_seqs) >= 2, timeout=5)
        slow_task.cancel()
        await asyncio.gather(slow_task, return_exceptions=True)

    [stream_frames] = [fast_seqs]
    # The fast consumer saw every frame the link brought, in order, with no gap...
    assert stream_frames == list(range(stream_frames[0], stream_frames[0] + len(stream_frames)))
    # ...while the slow one, stuck meanwhile, lost all but the newest few.
    assert slow_seqs[1] - slow_seqs[0] > 10
    # The frames are real JPEGs of the screen.
    assert source.frames >= 40


async def test_frames_are_jpegs_and_an_unchanged_screen_sends_none(linked: Linked) -> None:
    source = linked.link.frames.get(0) if linked.link.frames else None
    assert source is not None
    linked.driver.fill((0, 0, 255))
    async with linked.router.watch(linked.device_id, rate=60, quality=80) as frames:
        [first] = await _take(frames, 1)
        assert (first.width, first.height, first.format) == (320, 200, "jpeg")
        pixels = simplejpeg.decode_jpeg(first.data, colorspace="RGB")
        assert pixels.shape == (200, 320, 3) and tuple(pixels[100, 100]) >= (240, 0, 0)
        received = linked.server_link.watches.streams[0].received

        # No change: the source keeps looking, and nothing comes.
        grabs = linked.driver.grabs()
        await eventually(lambda: linked.driver.grabs() >= grabs + 15, timeout=10)
        assert linked.server_link.watches.streams[0].received == received
        assert len(frames) == 0  # type: ignore[arg-type]

        # A change comes as the next frame.
        linked.driver.fill((0, 255, 0), Bounds(x=10, y=10, width=20, height=20))
        [second] = await _take(frames, 1)
        assert second.seq == first.seq + 1
        pixels = simplejpeg.decode_jpeg(second.data, colorspace="RGB")
        assert tuple(pixels[20, 20])[1] >= 240


async def test_capture_runs_only_while_watched(linked: Linked) -> None:
    sources = linked.link.frames
    assert sources is not None
    source = sources.get(0)
    assert not source.capturing and linked.driver.grabs() == 0
    async with linked.router.watch(linked.device_id) as frames:
        await _take(frames, 1)
        assert source.capturing
    loop = asyncio.get_running_loop()
    left = loop.time()
    await eventually(lambda: not source.capturing, timeout=5)
    assert loop.time() - left < 1.0
    assert not linked.server_link.watches.streams and not linked.link.watches
    # Stopped for real: the link goes on (heartbeats come) and no grab happens.
    grabs = linked.driver.grabs()
    beats = linked.server_link.last_frame_at
    await eventually(lambda: linked.server_link.last_frame_at > beats, timeout=5)
    assert linked.driver.grabs() == grabs
    # Watching again starts again, with the current frame at once.
    async with linked.router.watch(linked.device_id) as frames:
        [frame] = await _take(frames, 1)
        assert frame.width == 320


async def test_a_link_drop_ends_every_stream_on_both_sides(linked: Linked) -> None:
    linked.driver.animate = True
    source = linked.link.frames.get(0) if linked.link.frames else None
    assert source is not None
    async with linked.router.watch(linked.device_id) as frames:
        await _take(frames, 2)
        await linked.fleet.services.hub.disconnect(linked.device_id, 1012, "test drop")
        with pytest.raises(DeviceOfflineError):
            async with asyncio.timeout(10):
                async for _ in frames:
                    pass
    await eventually(lambda: not source.capturing, timeout=5)
    assert source.consumers == 0


async def test_watching_a_missing_screen_ends_with_the_agents_error(linked: Linked) -> None:
    async with linked.router.watch(linked.device_id, screen_id=3) as frames:
        with pytest.raises(Exception, match="no screen 3") as caught:
            await _take(frames, 1)
    assert caught.value.__class__.__name__ == "NotFoundError"


# -- the screen WebSocket route ----------------------------------------------------------------


def _ws_url(linked: Linked, token: str | None = None, **query: Any) -> str:
    base = linked.fleet.base_url.replace("http://", "ws://")
    params = {**query, **({"token": token} if token else {})}
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base}/v1/devices/{linked.device_id}/screen/ws" + (f"?{qs}" if qs else "")


async def test_the_screen_websocket_sends_jpeg_frames_to_a_viewer(linked: Linked) -> None:
    linked.driver.animate = True
    viewer = await linked.fleet.api_token("viewer", read_only=True)
    async with connect(_ws_url(linked, viewer, quality=60), compression=None) as ws:
        for _ in range(3):
            data = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(data, bytes) and data[:2] == b"\xff\xd8"
            assert simplejpeg.decode_jpeg_header(data)[:2] == (200, 320)

    # the watch is audited once it ends
    async def audited() -> list[dict[str, Any]]:
        response = await linked.fleet.owner.get("/v1/audit", params={"action": "screen.watch"})
        return [e for e in response.json()["entries"] if e["result"] == "ok"]

    [entry] = await eventually(audited, timeout=5)
    assert entry["device_id"] == linked.device_id
    await eventually(lambda: not linked.server_link.watches.streams, timeout=5)


async def test_the_screen_websocket_refuses_whom_it_must(linked: Linked) -> None:
    async def status(url: str) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        return refused.value.response.status_code

    assert await status(_ws_url(linked)) == 401
    other_tags = await linked.fleet.api_token("viewer", tags=["elsewhere"])
    assert await status(_ws_url(linked, other_tags)) == 404
    owner_token = await linked.fleet.api_token("owner")
    assert await status(_ws_url(linked, owner_token, quality=500)) == 422
    same_tag = await linked.fleet.api_token("viewer", tags=["lab"])
    async with connect(_ws_url(linked, same_tag)) as ws:
        assert (await asyncio.wait_for(ws.recv(), 10))[:2] == b"\xff\xd8"
        # the device goes offline: the viewer is told
        await linked.fleet.services.hub.disconnect(linked.device_id, 1012, "test drop")
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503


# -- transfers -----------------------------------------------------------------------------------


async def _chunks(total: int, piece: int = 3 << 20) -> AsyncIterator[bytes]:
    block = bytes(range(256)) * (piece // 256)
    sent = 0
    while sent < total:
        data = block[: min(piece, total - sent)]
        sent += len(data)
        yield data


def _sha256(total: int, piece: int = 3 << 20) -> str:
    digest = hashlib.sha256()
    block = bytes(range(256)) * (piece // 256)
    sent = 0
    while sent < total:
        data = block[: min(piece, total - sent)]
        digest.update(data)
        sent += len(data)
    return digest.hexdigest()


async def test_an_upload_arrives_whole_and_never_exceeds_its_window(linked: Linked) -> None:
    total = 40 << 20
    digest = _sha256(total)
    result = await linked.router.upload(
        linked.device_id, PROBE, _chunks(total), total, name=f"sha256:{digest}"
    )
    assert result == {"size": total, "sha256": digest}
    window = linked.server_link.transfers.last_upload
    assert window is not None and window.sent == total and window.sent <= window.granted
    transfers = linked.link.transfers
    assert transfers is not None
    assert 0 < transfers.peak_held <= transfers.window
    assert not transfers.active and not linked.server_link.transfers.active
    # a wrong checksum is the target's error, on the server's side
    with pytest.raises(ValidationError, match="SHA-256"):
        await linked.router.upload(
            linked.device_id, PROBE, _chunks(1 << 20), 1 << 20, name="sha256:" + "0" * 64
        )
    with pytest.raises(Exception, match="no transfer target 'media'"):
        await linked.router.upload(linked.device_id, "media", _chunks(10), 10)
    with pytest.raises(ValidationError, match="not the 20 announced"):
        await linked.router.upload(linked.device_id, PROBE, _chunks(10), 20)


async def test_a_download_arrives_whole_within_its_window(linked: Linked) -> None:
    total = 24 << 20
    name = f"{total}:seed"
    block = probe_pattern(name)
    expected = hashlib.sha256((block * (total // len(block) + 1))[:total]).hexdigest()
    digest = hashlib.sha256()
    async with linked.router.download(linked.device_id, PROBE, name) as incoming:
        assert incoming.size == total
        async for data in incoming:
            assert len(data) <= 4 << 20
            digest.update(data)
        held = incoming.peak_held  # type: ignore[attr-defined]
    assert digest.hexdigest() == expected
    assert 0 < held <= linked.server_link.transfers.window


def _active(linked: Linked) -> list[str]:
    transfers = linked.link.transfers
    return transfers.active if transfers is not None else []


class _SlowSink:
    """A target whose sink takes bytes until told to stop or fail."""

    def __init__(self) -> None:
        self.written = 0
        self.aborted = asyncio.Event()
        self.fail_after: int | None = None

    async def open_sink(self, name: str, size: int) -> UploadSink:
        return self

    async def open_source(self, name: str) -> Any:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.fail_after is not None and self.written >= self.fail_after:
            raise DeviceError("the disk is full")
        await asyncio.sleep(0.002)  # a slow disk

    async def finish(self) -> Any:
        return {"written": self.written}

    async def abort(self) -> None:
        self.aborted.set()


async def test_transfers_cancel_from_either_side(linked: Linked) -> None:
    sink = _SlowSink()
    linked.link.targets.register("slow", sink)
    total = 200 << 20

    # the server's caller gives up: the agent aborts its sink
    upload = asyncio.create_task(linked.router.upload(linked.device_id, "slow", _chunks(total),
                                                      total))  # fmt: skip
    await eventually(lambda: sink.written >= 4 << 20, timeout=10)
    upload.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await upload
    await asyncio.wait_for(sink.aborted.wait(), 10)
    transfers = linked.link.transfers
    assert transfers is not None
    await eventually(lambda: not _active(linked), timeout=5)

    # the agent cancels: the server's caller gets the error
    sink.aborted.clear()
    sink.written = 0
    upload = asyncio.create_task(linked.router.upload(linked.device_id, "slow", _chunks(total),
                                                      total))  # fmt: skip
    await eventually(lambda: sink.written >= 4 << 20, timeout=10)
    [transfer_id] = transfers.active
    assert transfers.cancel(transfer_id, "the operator stopped it")
    with pytest.raises(DeviceError, match="the operator stopped it"):
        await asyncio.wait_for(upload, 10)
    await asyncio.wait_for(sink.aborted.wait(), 10)

    # the target fails mid-way: both sides know
    sink.aborted.clear()
    sink.written, sink.fail_after = 0, 6 << 20
    with pytest.raises(DeviceError, match="the disk is full"):
        await asyncio.wait_for(
            linked.router.upload(linked.device_id, "slow", _chunks(total), total), 20
        )
    await asyncio.wait_for(sink.aborted.wait(), 10)
    assert not linked.server_link.transfers.active

    # the link drops mid-way: both sides end the transfer
    sink.aborted.clear()
    sink.written, sink.fail_after = 0, None
    upload = asyncio.create_task(linked.router.upload(linked.device_id, "slow", _chunks(total),
                                                      total))  # fmt: skip
    await eventually(lambda: sink.written >= 4 << 20, timeout=10)
    await linked.fleet.services.hub.disconnect(linked.device_id, 1012, "test drop")
    with pytest.raises(DeviceOfflineError):
        await asyncio.wait_for(upload, 10)
    await asyncio.wait_for(sink.aborted.wait(), 10)
    await eventually(lambda: linked.fleet.services.hub.get(linked.device_id), timeout=10)
    await eventually(lambda: linked.link.transfers is not None, timeout=10)

    # a download left early is cancelled on the agent
    async with linked.router.download(linked.device_id, PROBE, f"{total}") as incoming:
        async for _ in incoming:
            break
    await eventually(lambda: not _active(linked), timeout=5)
