"""The :class:`~remotehands.server.router.DeviceRouter` of a replica: devices linked here are
served in process, the others through NATS by the replica that holds their link.

Subjects (see :mod:`~remotehands.server.cluster.wire`):

- ``rh.dev.<device>.req|watch|upload|download``: the replica holding the device's link
  subscribes to ``rh.dev.<device>.*`` while it holds it, so a request reaches exactly that
  replica, and NATS answers "no responders" at once when none holds it (``device_offline``);
- ``rh.presence``: a link attached (``online``, with when) or lost (``offline``) here. A replica
  that still holds an older link of a device announced online elsewhere closes it with
  :data:`~remotehands.protocol.link.CLOSE_FENCED`: one live link per device in the fleet;
- ``rh.replica.alive``: every heartbeat interval, each replica's whole list of devices (so that
  a lost message is repaired); a replica not heard for the offline bound is dropped with its
  devices, and the database sweeper of the others marks those devices offline;
- ``rh.replica.sync``: a replica that starts or reconnects asks every other to announce now;
- ``rh.replica.<name>.bulk``: one action on many devices held by replica ``name``, in one
  request (a few, when the list of devices would not fit in one NATS message): the holder runs
  them as bulk actions run here and streams the results back to the asker's inbox in batches
  (every result in as the holder sends it, a batch never over NATS's ``max_payload``), with
  keepalives while nothing is done, then an end.

Streams cross replicas on per-stream inbox subjects: a watch's frames are pushed to the
watcher's inbox (every :class:`~remotehands.protocol.streams.Frame` field, the data as raw bytes)
and read through a drop-oldest queue; both ends send keepalives and a flow ends when either side
goes. An upload's chunks are requests to the holder's sink (each acknowledged once the holder
queued it: at most :data:`WINDOW_CHUNKS` in flight); a download's chunks are requests to the
reader's inbox, acknowledged as the reader takes them.

While NATS is away, devices linked here keep working and every other device fails at once with
``device_offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from remotehands.errors import (
    DeviceError,
    DeviceOfflineError,
    DeviceTimeoutError,
    RemoteHandsError,
    ValidationError,
)
from remotehands.protocol.link import CLOSE_CREDENTIAL_REFUSED, CLOSE_FENCED
from remotehands.protocol.streams import DropOldest, Frame, KeyframeRequests, KeyGate
from remotehands.server.cluster.bus import Outbox, guarded
from remotehands.server.cluster.connection import NatsConnection
from remotehands.server.cluster.wire import (
    PREFIX,
    device_subject,
    error_of,
    pack,
    pack_error,
    replica_subject,
    unpack,
)
from remotehands.server.link.streams import DEFAULT_DEPTH, WatchFeed
from remotehands.server.router import Incoming, InProcessRouter, Reply

if TYPE_CHECKING:
    from remotehands.server.events import EventBus
    from remotehands.server.link.hub import AgentLink, LinkHub

__all__ = [
    "ALIVE",
    "PRESENCE",
    "SYNC",
    "NatsRouter",
    "RemoteDevice",
]

logger = logging.getLogger(__name__)

PRESENCE = f"{PREFIX}.presence"
ALIVE = f"{PREFIX}.replica.alive"
SYNC = f"{PREFIX}.replica.sync"

REPLY_MARGIN_S = 1.0
"""Added to a request's timeout on the bus, so that the agent's own timeout answers first."""
CONTROL_TIMEOUT_S = 10.0
"""The longest opening a stream or a transfer on another replica may take."""
KEEPALIVE_S = 2.0
"""How often both ends of a cross-replica stream say they are still there."""
SILENCE_S = 3 * KEEPALIVE_S
"""A stream end not heard from for this long is gone."""
TRANSFER_TIMEOUT_S = 60.0
"""The longest one chunk or the end of a transfer may wait."""
WINDOW_CHUNKS = 8
"""Chunks of a transfer in flight between replicas."""
CHUNK_BYTES = 512 * 1024
"""The size of a transfer chunk between replicas (under NATS's default 1 MiB payload)."""
BULK_SILENCE_S = 5 * KEEPALIVE_S
"""A holder of devices of a bulk action not heard from for this long is gone (more than a
stream's :data:`SILENCE_S`: a holder running thousands of devices on a busy machine may be late
with its keepalives; a dead one is caught all the same)."""
BULK_BATCH = 1000
"""The most results of a bulk action in one message from the holder to the asker."""
KEYFRAME_ASK_TIMEOUT_S = 2.0
"""How long a consumer's request for a key frame may take to leave for the holder."""


def frame_message(frame: Frame) -> dict[str, Any]:
    """Every field of ``frame`` (whatever fields it has), its data as raw bytes."""
    return {
        "type": "frame",
        "frame": {f.name: getattr(frame, f.name) for f in dataclasses.fields(frame)},
    }


def frame_of(message: dict[str, Any]) -> Frame:
    """The :class:`Frame` of :func:`frame_message` (fields it lacks keep their defaults)."""
    values = message.get("frame")
    if not isinstance(values, dict):
        raise ValidationError("a frame message without its frame")
    try:
        return Frame(
            **{f.name: values[f.name] for f in dataclasses.fields(Frame) if f.name in values}
        )
    except TypeError as err:
        raise ValidationError(f"a frame message with bad fields: {err}") from err


@dataclass
class RemoteDevice:
    """What an action needs to know of a device linked to another replica."""

    name: str
    tags: list[str]
    capabilities: list[str]


@dataclass
class _Replica:
    last_seen: float
    devices: set[str] = field(default_factory=set)


class NatsRouter:
    """A :class:`~remotehands.server.router.DeviceRouter` over NATS; an async context manager.

    Also the hub's presence hooks (:meth:`link_attached`, :meth:`link_detached`): the app
    factory hands it to the :class:`~remotehands.server.link.hub.LinkHub`.
    """

    def __init__(
        self,
        nats: NatsConnection,
        hub: LinkHub,
        outbox: Outbox,
        *,
        events: EventBus | None = None,
        heartbeat_interval_s: float,
        offline_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nats = nats
        self._hub = hub
        self._local = InProcessRouter(hub)
        self._outbox = outbox
        self._events = events
        self.replica_id = nats.replica_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self.offline_after_s = offline_after_s
        self._clock = clock
        self._owners: dict[str, str] = {}
        self._known: dict[str, RemoteDevice] = {}
        """What the holders of remote devices said about them (kept current by events)."""
        self._replicas: dict[str, _Replica] = {}
        self._device_subs: dict[str, tuple[AgentLink, Subscription]] = {}
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.fenced = 0
        """Links closed here because their device connected to another replica."""

    # -- life --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        client = self._nats.client
        self._subs = [
            await client.subscribe(PRESENCE, cb=guarded("presence", self._on_presence)),
            await client.subscribe(ALIVE, cb=guarded("alive", self._on_alive)),
            await client.subscribe(SYNC, cb=guarded("sync", self._on_sync)),
            await client.subscribe(
                replica_subject(self.replica_id, "bulk"), cb=guarded("bulk", self._on_bulk)
            ),
        ]
        self._spawn(self._tick())
        if self._events is not None:
            self._spawn(self._cut_deleted(self._events))
        self._nats.on_reconnect(self._resync)
        self._resync()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sub in self._subs:
            await self._unsubscribe(sub)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task owned by the router (cancelled when it closes)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await sub.unsubscribe()

    # -- presence ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether this replica reaches NATS right now."""
        return self._nats.up

    @property
    def replicas(self) -> list[str]:
        """The other replicas heard from within the offline bound."""
        return sorted(self._replicas)

    def owner(self, device_id: str) -> str | None:
        """The replica holding ``device_id``'s link, as far as this one knows."""
        if self._hub.get(device_id) is not None:
            return self.replica_id
        return self._owners.get(device_id)

    def known(self, device_id: str) -> RemoteDevice | None:
        """The name, tags and capabilities of a device linked to another replica, as its
        holder announced them (tags and name kept current by ``device.updated`` events), so
        that an action through this replica is authorised without a database read; None when
        not known (ask the database)."""
        if device_id not in self._owners:
            return None
        return self._known.get(device_id)

    def _remember(self, device_id: str, message: dict[str, Any]) -> None:
        name, tags, capabilities = (
            message.get("name"),
            message.get("tags"),
            message.get("capabilities"),
        )
        if isinstance(name, str) and isinstance(tags, list) and isinstance(capabilities, list):
            self._known[device_id] = RemoteDevice(
                name, [str(t) for t in tags], [str(c) for c in capabilities]
            )
        else:
            self._known.pop(device_id, None)

    def _resync(self) -> None:
        self._announce()
        self._outbox.send(SYNC, {"replica": self.replica_id})

    def _announce(self) -> None:
        self._outbox.send(ALIVE, {"replica": self.replica_id, "devices": self._hub.device_ids()})

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            self._announce()
            self.expire()

    async def _cut_deleted(self, events: EventBus) -> None:
        """A device deleted through another replica loses its link here too (its credential
        no longer works: it cannot come back)."""
        with events.subscribe(types=("device.deleted", "device.updated")) as changes:
            async for event in changes:
                device_id = str(event.get("device_id"))
                if event.get("type") == "device.updated":
                    self._follow_update(device_id, event)
                    continue
                self._known.pop(device_id, None)
                if self._hub.get(device_id) is not None:
                    await self._hub.disconnect(
                        device_id, CLOSE_CREDENTIAL_REFUSED, "device deleted"
                    )

    def _follow_update(self, device_id: str, event: dict[str, Any]) -> None:
        known = self._known.get(device_id)
        if known is None:
            return
        tags, device = event.get("tags"), event.get("device")
        if not isinstance(tags, list):
            # no tags: what it may be seen by is not known any more; ask the database
            del self._known[device_id]
            return
        known.tags = [str(t) for t in tags]
        if isinstance(device, dict) and isinstance(device.get("name"), str):
            known.name = device["name"]

    def expire(self) -> list[str]:
        """Forget the replicas silent for the offline bound, with their devices; returns them."""
        cutoff = self._clock() - self.offline_after_s
        gone = [name for name, replica in self._replicas.items() if replica.last_seen < cutoff]
        for name in gone:
            logger.warning(
                "replica %s: silent for %g s, its devices are offline", name, self.offline_after_s
            )
            for device_id in self._replicas.pop(name).devices:
                if self._owners.get(device_id) == name:
                    del self._owners[device_id]
        return gone

    def _replica(self, name: str) -> _Replica:
        replica = self._replicas.get(name)
        if replica is None:
            replica = self._replicas[name] = _Replica(self._clock())
        replica.last_seen = self._clock()
        return replica

    async def _on_sync(self, message: dict[str, Any], msg: Msg) -> None:
        if str(message.get("replica")) != self.replica_id:
            self._announce()

    async def _on_alive(self, message: dict[str, Any], msg: Msg) -> None:
        name = str(message.get("replica", ""))
        devices = message.get("devices")
        if name == self.replica_id or not name or not isinstance(devices, list):
            return
        replica = self._replica(name)
        listed = {str(d) for d in devices}
        for device_id in replica.devices - listed:
            if self._owners.get(device_id) == name:
                del self._owners[device_id]
        for device_id in listed:
            self._owners[device_id] = name
        replica.devices = listed

    async def _on_presence(self, message: dict[str, Any], msg: Msg) -> None:
        name, device_id = message.get("replica"), message.get("device")
        op, since = message.get("op"), message.get("since")
        if not isinstance(name, str) or not isinstance(device_id, str) or not name or not device_id:
            raise ValidationError("a presence message without replica or device")
        if op not in ("online", "offline") or (
            op == "online" and not isinstance(since, int | float)
        ):
            raise ValidationError(f"a presence message with a bad op or time: {op!r}, {since!r}")
        if name == self.replica_id:
            return
        replica = self._replica(name)
        if message.get("op") == "online":
            replica.devices.add(device_id)
            self._owners[device_id] = name
            self._remember(device_id, message)
            link = self._hub.get(device_id)
            since = message.get("since")
            if (
                link is not None
                and isinstance(since, int | float)
                and link.connected_at.timestamp() <= since
            ):
                logger.info(
                    "agent link %s: the device connected to replica %s, fencing this link",
                    device_id,
                    name,
                )
                self.fenced += 1
                await self._hub.disconnect(
                    device_id, CLOSE_FENCED, "replaced by a newer connection of this device"
                )
        elif message.get("op") == "offline":
            replica.devices.discard(device_id)
            if self._owners.get(device_id) == name:
                del self._owners[device_id]
            if message.get("marked_offline") is True and self._hub.get(device_id) is not None:
                # an older link of a device held here ended on that replica, which wrote the
                # device offline (possibly after our online mark): it is online, here
                logger.info("agent link %s: its old link on %s ended; online here", device_id, name)
                await self._hub.reassert_online(device_id)

    async def link_attached(self, link: AgentLink) -> None:
        """Hub hook: ``link`` is held here now; answer for its device and fence it elsewhere."""
        device_id = link.device_id
        previous = self._device_subs.pop(device_id, None)
        if previous is not None:
            await self._unsubscribe(previous[1])
        try:
            async with asyncio.timeout(2.0):
                sub = await self._nats.client.subscribe(
                    device_subject(device_id, "*"), cb=self._device_callback(device_id)
                )
        except Exception:
            # NATS closed under us (a stop): the link still serves this replica's requests
            logger.warning("agent link %s: cannot answer for it on NATS", device_id, exc_info=True)
        else:
            self._device_subs[device_id] = (link, sub)
        self._owners.pop(device_id, None)
        self._outbox.send(
            PRESENCE,
            {"op": "online", "device": device_id, "replica": self.replica_id,
             "since": link.connected_at.timestamp(), "name": link.name, "tags": list(link.tags),
             "capabilities": [str(c) for c in link.hello.capabilities]},
        )  # fmt: skip

    async def link_detached(self, link: AgentLink, marked_offline: bool) -> None:
        """Hub hook: ``link`` ended; stop answering for its device unless a newer link holds it
        (``marked_offline``: its end wrote the device offline)."""
        device_id = link.device_id
        held = self._device_subs.get(device_id)
        if held is not None and held[0] is link:
            del self._device_subs[device_id]
            await self._unsubscribe(held[1])
        if self._hub.get(device_id) is None:
            self._outbox.send(
                PRESENCE,
                {"op": "offline", "device": device_id, "replica": self.replica_id,
                 "marked_offline": marked_offline},
            )  # fmt: skip

    # -- the holder's side -------------------------------------------------------------------

    def _device_callback(self, device_id: str) -> Callable[[Msg], Awaitable[None]]:
        handlers = {
            "req": self._serve_request,
            "watch": self._serve_watch,
            "upload": self._serve_upload,
            "download": self._serve_download,
        }

        async def dispatch(message: dict[str, Any], msg: Msg) -> None:
            operation = msg.subject.rpartition(".")[2]
            if operation == "req" and self._answer_from_link(device_id, message, msg):
                return
            handler = handlers.get(operation)
            if handler is None:
                logger.warning("cluster: dropped a message on unknown subject %s", msg.subject)
                return
            # each in its own task: a long action must not hold up the device's next request
            self._spawn(self._answering(msg, handler(device_id, message, msg)))

        return guarded(f"device {device_id}", dispatch)

    async def _answering(self, msg: Msg, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except RemoteHandsError as err:
            await self._respond(msg, pack_error(err))
        except Exception as err:
            logger.exception("cluster: serving %s failed", msg.subject)
            await self._respond(
                msg, pack_error(DeviceError(f"the replica holding the device failed: {err}"))
            )

    def _answer_from_link(self, device_id: str, message: dict[str, Any], msg: Msg) -> bool:
        """A device request answered from the link's reader when its reply comes (through the
        outbox): no task of its own. False when the link cannot take it at once (then a task
        serves it, :meth:`_serve_request`, and says what was wrong)."""
        link = self._hub.get(device_id)
        params = message.get("params")
        timeout_s = message.get("timeout_s")
        reply_to = msg.reply
        if (
            link is None
            or not reply_to
            or not isinstance(params, dict)
            or not isinstance(timeout_s, int | float)
        ):
            return False

        def done(result: Any, error: RemoteHandsError | None) -> None:
            try:
                data = pack_error(error) if error is not None else pack({"result": result})
            except Exception as err:  # the asker gets an answer, not its timeout
                logger.exception("cluster: answering a request for %s failed", device_id)
                data = pack_error(DeviceError(f"the replica holding the device failed: {err}"))
            self._outbox.send_packed(reply_to, self._fit(data))

        return link.call(str(message.get("action")), params, float(timeout_s), done)

    def _fit(self, data: bytes) -> bytes:
        """``data``, or an error saying that it is too large for NATS."""
        limit = self._nats.client.max_payload
        if len(data) <= limit:
            return data
        return pack_error(
            DeviceError(
                f"the answer ({len(data)} bytes) is larger than NATS's max_payload ({limit}): "
                "raise max_payload in the NATS server's configuration (deploy/nats-server.conf)"
            )
        )

    async def _respond(self, msg: Msg, data: bytes) -> None:
        if not msg.reply:
            return
        data = self._fit(data)
        try:
            async with asyncio.timeout(2.0):
                await msg.respond(data)
        except Exception as err:  # noqa: BLE001 - the asker times out: nothing else to do
            logger.info("cluster: could not answer on %s: %s", msg.reply, err)

    def _held(self, device_id: str) -> AgentLink:
        link = self._hub.get(device_id)
        if link is None:
            raise DeviceOfflineError(f"device {device_id} is offline: its link just closed")
        return link

    async def _serve_request(self, device_id: str, message: dict[str, Any], msg: Msg) -> None:
        params = message.get("params")
        timeout_s = message.get("timeout_s")
        if not isinstance(params, dict) or not isinstance(timeout_s, int | float):
            raise ValidationError("a device request without params or timeout")
        link = self._held(device_id)
        result = await link.request(str(message.get("action")), params, float(timeout_s))
        await self._respond(msg, pack({"result": result}))

    async def _serve_watch(self, device_id: str, message: dict[str, Any], msg: Msg) -> None:
        inbox = message.get("inbox")
        options = message.get("options")
        if not isinstance(inbox, str) or not isinstance(options, dict):
            raise ValidationError("a watch without an inbox or options")
        self._held(device_id)
        client = self._nats.client
        heard = [self._clock()]
        stop = asyncio.Event()

        feed: list[object] = []

        async def on_control(control: dict[str, Any], _: Msg) -> None:
            heard[0] = self._clock()
            op = control.get("op")
            if op == "stop":
                stop.set()
            elif op == "key" and feed and isinstance(feed[0], KeyframeRequests):
                await feed[0].request_key()

        control = client.new_inbox()
        sub = await client.subscribe(control, cb=guarded("watch control", on_control))
        answered = False
        try:
            async with self._local.watch(device_id, **options) as frames:
                feed.append(frames)
                await self._respond(msg, pack({"control": control}))
                answered = True

                async def pump() -> None:
                    async for frame in frames:
                        await client.publish(inbox, pack(frame_message(frame)))

                async def watchdog() -> None:
                    while not stop.is_set():
                        if self._clock() - heard[0] > SILENCE_S:
                            return
                        await client.publish(inbox, pack({"type": "alive"}))
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(KEEPALIVE_S):
                                await stop.wait()

                pumping = asyncio.ensure_future(pump())
                guarding = asyncio.ensure_future(watchdog())
                try:
                    await asyncio.wait({pumping, guarding}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (pumping, guarding):
                        task.cancel()
                    results = await asyncio.gather(pumping, guarding, return_exceptions=True)
                error = next((r for r in results if isinstance(r, RemoteHandsError)), None)
                if not stop.is_set():
                    end: dict[str, Any] = {"type": "end"}
                    if error is not None:
                        end["error"] = error.to_wire()
                    with contextlib.suppress(Exception):
                        await client.publish(inbox, pack(end))
        except RemoteHandsError as err:
            if not answered:
                raise
            with contextlib.suppress(Exception):
                await client.publish(inbox, pack({"type": "end", "error": err.to_wire()}))
        finally:
            await self._unsubscribe(sub)

    async def _serve_upload(self, device_id: str, message: dict[str, Any], msg: Msg) -> None:
        target, name, size = message.get("target"), message.get("name"), message.get("size")
        if not isinstance(target, str) or not isinstance(name, str) or not isinstance(size, int):
            raise ValidationError("an upload without target, name or size")
        self._held(device_id)
        client = self._nats.client
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(WINDOW_CHUNKS)

        async def chunks() -> AsyncIterator[bytes]:
            while (item := await queue.get()) is not None:
                yield item

        upload = asyncio.ensure_future(
            self._local.upload(device_id, target, chunks(), size, name=name)
        )
        finished = asyncio.Event()
        heard = [self._clock()]

        async def outcome() -> bytes:
            try:
                return pack({"result": await upload})
            except RemoteHandsError as err:
                return pack_error(err)
            except asyncio.CancelledError:
                return pack_error(DeviceError("the upload was cancelled"))

        async def on_sink(part: dict[str, Any], part_msg: Msg) -> None:
            heard[0] = self._clock()
            op = part.get("op")
            if op == "chunk":
                data = part.get("data")
                if not isinstance(data, bytes):
                    raise ValidationError("an upload chunk without bytes")
                put = asyncio.ensure_future(queue.put(data))
                await asyncio.wait(
                    {put, upload}, timeout=TRANSFER_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
                )
                if not put.done():
                    put.cancel()
                    await self._respond(part_msg, await outcome() if upload.done() else pack_error(
                        DeviceTimeoutError("the device took no chunk in time")))  # fmt: skip
                    return
                await self._respond(part_msg, pack({"ok": True}))
            elif op == "end":
                if not upload.done():
                    await queue.put(None)
                await self._respond(part_msg, await outcome())
                finished.set()
            elif op == "cancel":
                upload.cancel()
                finished.set()

        sink = client.new_inbox()
        sub = await client.subscribe(sink, cb=guarded("upload sink", on_sink))
        try:
            await self._respond(msg, pack({"sink": sink}))
            while not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE_S):
                        await finished.wait()
                if self._clock() - heard[0] > TRANSFER_TIMEOUT_S:
                    break  # the uploader went away
        finally:
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
            await self._unsubscribe(sub)

    async def _serve_download(self, device_id: str, message: dict[str, Any], msg: Msg) -> None:
        target, name, inbox = message.get("target"), message.get("name"), message.get("inbox")
        if not isinstance(target, str) or not isinstance(name, str) or not isinstance(inbox, str):
            raise ValidationError("a download without target, name or inbox")
        self._held(device_id)
        client = self._nats.client
        cancelled = asyncio.Event()

        async def on_control(control: dict[str, Any], _: Msg) -> None:
            if control.get("op") == "cancel":
                cancelled.set()

        control = client.new_inbox()
        sub = await client.subscribe(control, cb=guarded("download control", on_control))
        try:
            async with self._local.download(device_id, target, name) as incoming:
                await self._respond(msg, pack({"size": incoming.size, "control": control}))
                window = asyncio.Semaphore(WINDOW_CHUNKS)
                failed: list[RemoteHandsError] = []

                async def send(data: bytes) -> None:
                    try:
                        reply = await client.request(inbox, pack({"type": "chunk", "data": data}),
                                                     timeout=TRANSFER_TIMEOUT_S)  # fmt: skip
                        if unpack(reply.data).get("op") == "cancel":
                            cancelled.set()
                    except Exception as err:  # noqa: BLE001 - the reader went away
                        failed.append(DeviceTimeoutError(f"the reader took no chunk: {err}"))
                        cancelled.set()
                    finally:
                        window.release()

                sending: set[asyncio.Task[None]] = set()
                try:
                    async for data in incoming:
                        for start in range(0, len(data), CHUNK_BYTES):
                            if not await _acquire_unless(window, cancelled):
                                break
                            task = asyncio.ensure_future(send(data[start : start + CHUNK_BYTES]))
                            sending.add(task)
                            task.add_done_callback(sending.discard)
                        if cancelled.is_set():
                            break
                    # the last chunks' acknowledgements, unless the reader left meanwhile
                    stopping = asyncio.ensure_future(cancelled.wait())
                    try:
                        while sending and not cancelled.is_set():
                            await asyncio.wait(
                                {*sending, stopping}, return_when=asyncio.FIRST_COMPLETED
                            )
                    finally:
                        stopping.cancel()
                finally:
                    for task in sending:
                        task.cancel()
                    await asyncio.gather(*sending, return_exceptions=True)
        except RemoteHandsError as err:
            with contextlib.suppress(Exception):
                if msg.reply and not cancelled.is_set():
                    await client.publish(inbox, pack({"type": "end", "error": err.to_wire()}))
            raise
        finally:
            await self._unsubscribe(sub)

    # -- bulk actions ------------------------------------------------------------------------

    async def _on_bulk(self, message: dict[str, Any], msg: Msg) -> None:
        self._spawn(self._answering(msg, self._serve_bulk(message, msg)))

    async def _serve_bulk(self, message: dict[str, Any], msg: Msg) -> None:
        """Run a bulk action on devices held here for another replica; results to its inbox."""
        devices, action, params = (
            message.get("devices"),
            message.get("action"),
            message.get("params"),
        )
        timeout_s, concurrency = message.get("timeout_s"), message.get("concurrency")
        inbox = message.get("inbox")
        if (
            not isinstance(devices, list)
            or not isinstance(action, str)
            or not isinstance(params, dict)
            or not isinstance(timeout_s, int | float)
            or not isinstance(concurrency, int)
            or not isinstance(inbox, str)
        ):
            raise ValidationError(
                "a bulk request without devices, action, params, timeout or inbox"
            )
        client = self._nats.client
        queue: asyncio.Queue[Reply | None] = asyncio.Queue()

        async def collect() -> None:
            try:
                replies = self._local.request_many(
                    [str(d) for d in devices], action, params, float(timeout_s),
                    concurrency=max(1, concurrency),
                )  # fmt: skip
                async with contextlib.aclosing(replies):
                    async for reply in replies:
                        queue.put_nowait(reply)
            finally:
                queue.put_nowait(None)

        async def on_control(control: dict[str, Any], _: Msg) -> None:
            if control.get("op") == "cancel":
                collecting.cancel()  # the asker went away: start nothing more

        control = client.new_inbox()
        sub = await client.subscribe(control, cb=guarded("bulk control", on_control))
        collecting = asyncio.ensure_future(collect())
        try:
            await self._respond(msg, pack({"control": control, "accepted": len(devices)}))
            finished = False
            while not finished:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        first = await queue.get()
                except TimeoutError:
                    await client.publish(inbox, pack({"type": "alive"}))
                    continue
                # one turn of the loop lets the replies that came with this one join its batch
                await asyncio.sleep(0)
                batch = [first]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                finished = batch[-1] is None
                await self._send_results(inbox, [r for r in batch if r is not None])
            await client.publish(inbox, pack({"type": "end"}))
        finally:
            collecting.cancel()
            await asyncio.gather(collecting, return_exceptions=True)
            await self._unsubscribe(sub)

    async def _send_results(self, inbox: str, replies: list[Reply]) -> None:
        """``replies`` to ``inbox``, in as few messages as fit NATS's ``max_payload``."""
        limit = self._nats.client.max_payload
        pending = [replies[i : i + BULK_BATCH] for i in range(0, len(replies), BULK_BATCH)]
        while pending:
            batch = pending.pop(0)
            if not batch:
                continue
            data = pack({"type": "results", "results": [_reply_entry(r) for r in batch]})
            if len(data) > limit and len(batch) > 1:
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            if len(data) > limit:
                too_big = DeviceError(
                    f"the result ({len(data)} bytes) is larger than NATS's max_payload ({limit}): "
                    "raise max_payload in the NATS server's configuration (deploy/nats-server.conf)"
                )
                reply = batch[0]
                entry = _reply_entry(Reply(reply.device_id, None, too_big, reply.duration_ms))
                data = pack({"type": "results", "results": [entry]})
            await self._nats.client.publish(inbox, data)

    # -- the asker's side --------------------------------------------------------------------

    def _unreachable(self, device_id: str) -> DeviceOfflineError:
        return DeviceOfflineError(
            f"device {device_id} is not linked to this replica and NATS is unreachable, so "
            "the replica holding it cannot be asked; this replica reconnects by itself"
        )

    async def _ask(
        self, device_id: str, operation: str, message: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        """One request to the replica holding ``device_id``; its reply, or its error raised."""
        if not self._nats.up:
            raise self._unreachable(device_id)
        try:
            # a request in flight when NATS goes fails then, not at its timeout (NatsLost)
            reply = await self._nats.request(
                device_subject(device_id, operation), pack(message), timeout_s
            )
        except nats.errors.NoRespondersError as err:
            raise DeviceOfflineError(
                f"device {device_id} is offline: no replica holds its agent's link"
            ) from err
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"device {device_id}: the replica holding it did not answer within {timeout_s:g} s"
            ) from err
        except nats.errors.Error as err:
            raise self._unreachable(device_id) from err
        try:
            answer = unpack(reply)
        except ValidationError as err:
            raise DeviceError(
                f"device {device_id}: the replica holding it answered garbage ({err})"
            ) from err
        error = error_of(answer)
        if error is not None:
            raise error
        return answer

    async def request(
        self, device_id: str, action: str, params: dict[str, Any], timeout_s: float
    ) -> Any:
        """See :meth:`remotehands.server.router.DeviceRouter.request`."""
        if self._hub.get(device_id) is not None:
            return await self._local.request(device_id, action, params, timeout_s)
        answer = await self._ask(
            device_id, "req", {"action": action, "params": params, "timeout_s": timeout_s},
            timeout_s + REPLY_MARGIN_S,
        )  # fmt: skip
        return answer.get("result")

    def call(
        self,
        device_id: str,
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        done: Callable[[Any, RemoteHandsError | None], None],
    ) -> bool:
        """See :meth:`remotehands.server.router.DeviceRouter.call`: a device linked here only
        (another replica's answers through NATS: :meth:`request`)."""
        return self._local.call(device_id, action, params, timeout_s, done)

    async def request_many(
        self,
        device_ids: Sequence[str],
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        *,
        concurrency: int,
    ) -> AsyncGenerator[Reply, None]:
        """See :meth:`remotehands.server.router.DeviceRouter.request_many`: the devices linked
        here run here, those of each other replica go to it in one request (a few when their
        list would not fit one NATS message) and run there, ``concurrency`` at a time on each
        replica."""
        replies: asyncio.Queue[Reply] = asyncio.Queue()
        local: list[str] = []
        remote: dict[str, list[str]] = {}
        for device_id in device_ids:
            if self._hub.get(device_id) is not None:
                local.append(device_id)
            elif not self._nats.up:
                replies.put_nowait(Reply(device_id, error=self._unreachable(device_id)))
            elif (owner := self._owners.get(device_id)) is None:
                offline = DeviceOfflineError(
                    f"device {device_id} is offline: no replica holds its agent's link"
                )
                replies.put_nowait(Reply(device_id, error=offline))
            else:
                remote.setdefault(owner, []).append(device_id)
        request = {"action": action, "params": params, "timeout_s": timeout_s}
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        if local:
            tasks.append(loop.create_task(
                self._run_local(local, action, params, timeout_s, concurrency, replies.put_nowait)
            ))  # fmt: skip
        for owner, held in remote.items():
            chunks = self._bulk_chunks(held, len(pack(request)))
            share = max(1, concurrency // len(chunks))  # the bound holds across the chunks
            for chunk in chunks:
                tasks.append(loop.create_task(self._ask_bulk(
                    owner, chunk, {**request, "concurrency": share}, replies.put_nowait
                )))  # fmt: skip
        try:
            for _ in range(len(device_ids)):
                yield await replies.get()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _bulk_chunks(self, device_ids: list[str], base: int) -> list[list[str]]:
        """``device_ids`` cut so that each request naming them fits NATS's ``max_payload``
        (with room to spare)."""
        room = max(1024, self._nats.client.max_payload // 2 - base)
        chunks: list[list[str]] = [[]]
        used = 0
        for device_id in device_ids:
            size = len(device_id) + 3  # quotes and comma
            if chunks[-1] and used + size > room:
                chunks.append([])
                used = 0
            chunks[-1].append(device_id)
            used += size
        return chunks

    async def _run_local(
        self,
        device_ids: list[str],
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        concurrency: int,
        put: Callable[[Reply], None],
    ) -> None:
        """The devices of a bulk action linked here; each one's reply to ``put``."""
        outstanding = set(device_ids)
        try:
            replies = self._local.request_many(
                device_ids, action, params, timeout_s, concurrency=concurrency
            )
            async with contextlib.aclosing(replies):
                async for reply in replies:
                    outstanding.discard(reply.device_id)
                    put(reply)
        finally:
            for device_id in outstanding:  # only on a bug: a device never goes unanswered
                put(Reply(device_id, error=DeviceError(f"device {device_id}: no result")))

    async def _ask_bulk(
        self,
        owner: str,
        device_ids: list[str],
        request: dict[str, Any],
        put: Callable[[Reply], None],
    ) -> None:
        """The devices of a bulk action held by replica ``owner``: one request, the results
        streamed back to an inbox; each device's reply to ``put``, exactly once."""
        client = self._nats.client
        outstanding = dict.fromkeys(device_ids)
        heard = [self._clock()]
        ended = asyncio.Event()

        def settle(reply: Reply) -> None:
            if reply.device_id in outstanding:
                del outstanding[reply.device_id]
                put(reply)

        def settle_rest(error: Callable[[str], RemoteHandsError]) -> None:
            for device_id in list(outstanding):
                settle(Reply(device_id, error=error(device_id)))

        async def on_message(message: dict[str, Any], _: Msg) -> None:
            heard[0] = self._clock()
            kind = message.get("type")
            if kind == "results":
                entries = message.get("results")
                if not isinstance(entries, list):
                    raise ValidationError("bulk results that are not a list")
                for entry in entries:
                    reply = _reply_of(entry)
                    if reply is not None:
                        settle(reply)
                if not outstanding:
                    ended.set()
            elif kind == "end":
                ended.set()

        inbox = client.new_inbox()
        sub = await client.subscribe(inbox, cb=guarded("bulk results", on_message))
        control: str | None = None
        try:
            try:
                reply = await client.request(
                    replica_subject(owner, "bulk"),
                    pack({**request, "devices": device_ids, "inbox": inbox}),
                    timeout=CONTROL_TIMEOUT_S,
                )
                answer = unpack(reply.data)
            except nats.errors.NoRespondersError:
                settle_rest(lambda d: DeviceOfflineError(
                    f"device {d} is offline: replica {owner}, which held it, is gone"))  # fmt: skip
                return
            except (nats.errors.TimeoutError, TimeoutError):
                settle_rest(lambda d: DeviceTimeoutError(
                    f"device {d}: replica {owner}, which holds its link, did not take the bulk "
                    f"action within {CONTROL_TIMEOUT_S:g} s"))  # fmt: skip
                return
            except (nats.errors.Error, RemoteHandsError):
                settle_rest(self._unreachable)
                return
            error = error_of(answer)
            if error is not None:
                settle_rest(lambda _: error)
                return
            control = str(answer.get("control"))
            heard[0] = max(heard[0], self._clock())  # silence counts from the acceptance
            lost = self._nats.lost()
            while outstanding and not ended.is_set():
                ending: asyncio.Future[Any] = asyncio.ensure_future(ended.wait())
                asleep = self._clock()
                try:
                    await asyncio.wait({ending, lost}, timeout=KEEPALIVE_S,
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                finally:
                    ending.cancel()
                # A wake-up late by a stall of this replica's own loop is not the holder's
                # silence: what it sent meanwhile is still unread on the socket.
                heard[0] += max(0.0, self._clock() - asleep - KEEPALIVE_S)
                if lost.done():
                    settle_rest(self._unreachable)
                elif self._clock() - heard[0] > BULK_SILENCE_S:
                    settle_rest(lambda d: DeviceTimeoutError(
                        f"device {d}: replica {owner}, which holds its link, stopped answering "
                        f"for {BULK_SILENCE_S:g} s during the bulk action"))  # fmt: skip
            settle_rest(lambda d: DeviceError(
                f"device {d}: replica {owner} sent no result for it"))  # fmt: skip
        finally:
            if outstanding and control is not None:  # cancelled: the holder starts no more
                with contextlib.suppress(Exception):
                    await client.publish(control, pack({"op": "cancel"}))
            await self._unsubscribe(sub)

    def is_online(self, device_id: str) -> bool:
        """See :meth:`remotehands.server.router.DeviceRouter.is_online`: linked here, or to a
        replica heard from (while NATS is up)."""
        if self._hub.get(device_id) is not None:
            return True
        return self._nats.up and device_id in self._owners

    def watch(
        self,
        device_id: str,
        screen_id: int = 0,
        *,
        rate: float = 30.0,
        quality: int = 75,
        **options: Any,
    ) -> AbstractAsyncContextManager[AsyncIterator[Frame]]:
        """See :meth:`remotehands.server.router.DeviceRouter.watch`; keyword ``options`` are
        carried to the holder's watch as they are."""
        if self._hub.get(device_id) is not None:
            return self._local.watch(device_id, screen_id, rate=rate, quality=quality, **options)
        return self._remote_watch(
            device_id, {"screen_id": screen_id, "rate": rate, "quality": quality, **options}
        )

    @contextlib.asynccontextmanager
    async def _remote_watch(
        self, device_id: str, options: dict[str, Any]
    ) -> AsyncIterator[AsyncIterator[Frame]]:
        if not self._nats.up:
            raise self._unreachable(device_id)
        client = self._nats.client
        queue: DropOldest[Frame] = DropOldest(DEFAULT_DEPTH)
        heard = [self._clock()]

        async def on_message(message: dict[str, Any], _: Msg) -> None:
            heard[0] = self._clock()
            kind = message.get("type")
            if kind == "frame":
                queue.put(frame_of(message))
            elif kind == "end":
                queue.close(error_of(message))

        inbox = client.new_inbox()
        sub = await client.subscribe(inbox, cb=guarded("watch", on_message))
        try:
            answer = await self._ask(
                device_id, "watch", {"inbox": inbox, "options": options}, CONTROL_TIMEOUT_S
            )
            control = str(answer.get("control"))

            async def keepalive() -> None:
                while not queue.closed:
                    if self._clock() - heard[0] > SILENCE_S:
                        gone = f"device {device_id}: the replica holding it stopped streaming"
                        queue.close(DeviceOfflineError(gone))
                        return
                    with contextlib.suppress(Exception):
                        await client.publish(control, pack({"op": "alive"}))
                    await asyncio.sleep(KEEPALIVE_S)

            async def ask_holder() -> None:
                # a lost request is asked again by the consumer's gate: never an error here
                with contextlib.suppress(Exception):
                    await client.publish(control, pack({"op": "key"}))

            keeping = asyncio.ensure_future(keepalive())
            try:
                yield WatchFeed(
                    queue, lambda: client.publish(control, pack({"op": "key"})), KeyGate()
                )
            finally:
                keeping.cancel()
                await asyncio.gather(keeping, return_exceptions=True)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await client.publish(control, pack({"op": "stop"}))
        finally:
            queue.close()
            await self._unsubscribe(sub)

    async def upload(
        self,
        device_id: str,
        target: str,
        chunks: AsyncIterable[bytes],
        size: int,
        *,
        name: str = "",
    ) -> Any:
        """See :meth:`remotehands.server.router.DeviceRouter.upload`."""
        if self._hub.get(device_id) is not None:
            return await self._local.upload(device_id, target, chunks, size, name=name)
        answer = await self._ask(
            device_id, "upload", {"target": target, "name": name, "size": size}, CONTROL_TIMEOUT_S
        )
        sink = str(answer.get("sink"))
        client = self._nats.client
        window = asyncio.Semaphore(WINDOW_CHUNKS)
        errors: list[RemoteHandsError] = []

        async def send(data: bytes) -> None:
            try:
                reply = await client.request(
                    sink, pack({"op": "chunk", "data": data}), timeout=TRANSFER_TIMEOUT_S
                )
                error = error_of(unpack(reply.data))
                if error is not None:
                    errors.append(error)
            except (nats.errors.Error, TimeoutError) as err:
                errors.append(
                    DeviceTimeoutError(f"device {device_id}: a chunk was not taken ({err})")
                )
            finally:
                window.release()

        try:
            async with asyncio.TaskGroup() as group:
                async for data in chunks:
                    for start in range(0, len(data), CHUNK_BYTES):
                        await window.acquire()
                        if errors:
                            raise errors[0]
                        group.create_task(send(data[start : start + CHUNK_BYTES]))
            if errors:
                raise errors[0]
            try:
                reply = await client.request(sink, pack({"op": "end"}), timeout=TRANSFER_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError) as err:
                raise DeviceTimeoutError(f"device {device_id} did not confirm the upload") from err
        except BaseException:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.publish(sink, pack({"op": "cancel"}))
            raise
        answer = unpack(reply.data)
        error = error_of(answer)
        if error is not None:
            raise error
        return answer.get("result")

    def download(
        self, device_id: str, target: str, name: str
    ) -> AbstractAsyncContextManager[Incoming]:
        """See :meth:`remotehands.server.router.DeviceRouter.download`."""
        if self._hub.get(device_id) is not None:
            return self._local.download(device_id, target, name)
        return self._remote_download(device_id, target, name)

    @contextlib.asynccontextmanager
    async def _remote_download(
        self, device_id: str, target: str, name: str
    ) -> AsyncIterator[Incoming]:
        if not self._nats.up:
            raise self._unreachable(device_id)
        client = self._nats.client
        queue: asyncio.Queue[tuple[bytes, Msg] | RemoteHandsError] = asyncio.Queue()

        async def on_message(message: dict[str, Any], msg: Msg) -> None:
            if message.get("type") == "chunk" and isinstance(message.get("data"), bytes):
                queue.put_nowait((message["data"], msg))
            elif message.get("type") == "end":
                queue.put_nowait(error_of(message) or DeviceError("the download ended early"))

        inbox = client.new_inbox()
        sub = await client.subscribe(inbox, cb=guarded("download", on_message))
        try:
            answer = await self._ask(
                device_id,
                "download",
                {"target": target, "name": name, "inbox": inbox},
                CONTROL_TIMEOUT_S,
            )
            incoming = _RemoteIncoming(int(answer.get("size", 0)), queue, self._respond)
            try:
                yield incoming
            finally:
                if incoming.received < incoming.size:
                    with contextlib.suppress(Exception):
                        await client.publish(str(answer.get("control")), pack({"op": "cancel"}))
                    while not queue.empty():  # chunks in flight: tell their sender to stop
                        item = queue.get_nowait()
                        if not isinstance(item, RemoteHandsError):
                            await self._respond(item[1], pack({"op": "cancel"}))
        finally:
            await self._unsubscribe(sub)


def _reply_entry(reply: Reply) -> dict[str, Any]:
    """``reply`` as a bulk results message carries it."""
    entry: dict[str, Any] = {"device": reply.device_id, "ms": reply.duration_ms}
    if reply.error is None:
        entry["result"] = reply.result
    else:
        entry["error"] = reply.error.to_wire()
    return entry


def _reply_of(entry: Any) -> Reply | None:
    """The :class:`Reply` of :func:`_reply_entry`; None (logged) for a malformed entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("device"), str):
        logger.warning("cluster: dropped a bulk result without a device: %r", entry)
        return None
    duration = entry.get("ms")
    return Reply(
        entry["device"],
        entry.get("result"),
        error_of(entry),
        float(duration) if isinstance(duration, int | float) else 0.0,
    )


async def _acquire_unless(window: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Take one place in ``window``, unless ``stop`` is set first; whether it was taken."""
    if stop.is_set():
        return False
    acquiring = asyncio.ensure_future(window.acquire())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not acquiring.done():
            acquiring.cancel()
        await asyncio.gather(acquiring, stopping, return_exceptions=True)
    if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
        if stop.is_set():
            window.release()
            return False
        return True
    return False


class _RemoteIncoming:
    """A download from another replica: chunks acknowledged as the reader takes them."""

    def __init__(
        self,
        size: int,
        queue: asyncio.Queue[tuple[bytes, Msg] | RemoteHandsError],
        respond: Callable[[Msg, bytes], Coroutine[Any, Any, None]],
    ) -> None:
        self.size = size
        self.received = 0
        self._queue = queue
        self._respond = respond

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while self.received < self.size:
            try:
                async with asyncio.timeout(TRANSFER_TIMEOUT_S):
                    item = await self._queue.get()
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"download got nothing for {TRANSFER_TIMEOUT_S:g} s"
                ) from err
            if isinstance(item, RemoteHandsError):
                raise item
            data, msg = item
            self.received += len(data)
            await self._respond(msg, pack({"op": "ok"}))
            yield data
