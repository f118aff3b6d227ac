"""The live agent links of this server process, and their bookkeeping.

One :class:`AgentLink` per connected device: it sends requests and matches the replies to their
waiting callers by id, takes heartbeats, and notices a silent agent. The :class:`LinkHub` holds
the links by device id and keeps the database and the event bus in step with them:

- a device whose agent said hello is marked ``online`` (with what the hello says) before the
  agent is welcomed, and ``device.online`` is published;
- heartbeats keep the link's live ``health`` (:attr:`AgentLink.health`: what the device routes
  show for a device online here) and refresh ``last_seen``. Ten thousand links beat a thousand
  times a second, and nearly every beat says what the previous one said, so the database is
  written only what is new: ``last_seen`` of every link that beat since the last write in one
  statement (``UPDATE ... WHERE id IN (...)``, stamped with the time of the write, at most
  a quarter interval and a second after the beat), and the stored ``health`` only when it
  changed meaningfully (:func:`health_changed`: then ``device.health`` is published too) and
  when the device goes offline (the last health it reported). The stored health of a device
  online here may therefore lag its live health by small wobbles of load and the uptime's
  progress; ``last_seen`` is as fresh as before, which the stale sweeper relies on;
- a link that carried no frame for ``offline_after_s`` (by the hub's monotonic clock, checked by
  a watchdog several times per heartbeat interval) is closed and its device marked ``offline``
  (``device.offline``); a sweeper does the same for devices left ``online`` in the database that
  no live link refreshes (a crashed process, a lost replica);
- when the same device connects again, the old link is fenced: closed with
  :data:`~remotehands.protocol.link.CLOSE_FENCED`, its waiting requests failed;
- garbage from an agent closes that link with
  :data:`~remotehands.protocol.link.CLOSE_PROTOCOL_ERROR`; nothing an agent sends can hurt the
  server or the other links;
- on a graceful stop (:meth:`LinkHub.close_for_restart`, run before the HTTP server closes its
  sockets) each agent is told when to come back, each its own delay spread over a few seconds,
  and every device held here goes offline;
- the online marks of hellos that arrive together (a restarted server's whole fleet) are
  written in one transaction, and so are the offline marks of links that end together (a
  network outage drops ten thousand at once: one session each would queue on the pool and
  time out, leaving the devices "online" until the sweeper came).

Events of a link carry its device's ``tags`` (kept current from ``device.updated``), so that the
events stream can filter them for tag-limited tokens without a lookup.

The WebSocket endpoint (:mod:`remotehands.server.link.ws`) authenticates the agent, reads its
hello and hands the connection to :meth:`LinkHub.serve`. Requests reach links only through a
:class:`~remotehands.server.router.DeviceRouter` (``InProcessRouter(hub)``, built by the app
factory); the hub does not build one.

The hub is given what it uses: the database, the event bus, its timing, and two clocks (aware
UTC datetimes for what it writes, monotonic seconds for heartbeats and silence), so that tests
move time instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self, cast

import pydantic
from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError

from remotehands.errors import (
    AuthError,
    DeviceError,
    DeviceOfflineError,
    DeviceTimeoutError,
    RemoteHandsError,
    ValidationError,
    error_from_wire,
)
from remotehands.protocol.link import (
    CLOSE_CREDENTIAL_REFUSED,
    CLOSE_FENCED,
    CLOSE_PROTOCOL_ERROR,
    STREAM_MESSAGES,
    TRANSFER_MESSAGES,
    Hello,
    Reply,
    decode,
    encode,
    heartbeat_health,
    restart_reason,
)
from remotehands.server.batch import Batcher
from remotehands.server.db.engine import Database
from remotehands.server.db.models import Device
from remotehands.server.events import EventBus
from remotehands.server.link.streams import LinkWatches
from remotehands.server.link.transfers import LinkTransfers

__all__ = [
    "CLOSE_GOING_AWAY",
    "AgentLink",
    "LinkHub",
    "LinkIdentity",
    "LinkPresence",
    "LinkTransport",
    "health_changed",
    "restart_delay",
    "restart_spread",
]

logger = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
"""Close code for a link the server drops without blame: shutdown, or an agent gone silent."""
RESTART_DELAY_S = 0.5
"""The least an agent is told to wait before coming back to a server that stopped: about the
time a supervisor takes to start it again."""
RESTART_SPREAD_MIN_S = 1.0
RESTART_SPREAD_MAX_S = 5.0
RESTART_LINKS_PER_S = 400.0
"""Agents are told to come back over ``links / RESTART_LINKS_PER_S`` seconds (within the
bounds above): a thousand agents over 2.5 s, not all in the same millisecond."""

SEND_TIMEOUT_S = 10.0
"""The longest one frame may wait to be written to an agent's socket."""
CLOSE_TIMEOUT_S = 2.0
"""The longest closing a link may take before it is abandoned to the socket layer."""
DB_TIMEOUT_S = 10.0
"""The longest one bookkeeping write may take."""
_MAX_REASON = 120  # a close reason must fit in a control frame (123 bytes)

# Core UPDATEs, so that a row deleted meanwhile is skipped instead of failing the batch: the
# last_seen of many devices in one statement, and the health of a few (executemany).
_devices = cast(Table, Device.__table__)
_SEEN_UPDATE = (
    update(_devices)
    .where(_devices.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(last_seen=bindparam("b_seen"))
)
_HEALTH_UPDATE = (
    update(_devices).where(_devices.c.id == bindparam("b_id")).values(health=bindparam("b_health"))
)
# The online mark of a hello, many at once (a restarted server's whole fleet says hello within
# seconds): health only when the hello carries it, so two statements.
_ONLINE_UPDATE = (
    update(_devices)
    .where(_devices.c.id == bindparam("b_id"))
    .values(
        status="online",
        agent_version=bindparam("b_agent_version"),
        driver=bindparam("b_driver"),
        device_type=bindparam("b_device_type"),
        capabilities=bindparam("b_capabilities"),
        screens=bindparam("b_screens"),
        hardware_id=bindparam("b_hardware_id"),
        last_seen=bindparam("b_seen"),
    )
)
_ONLINE_UPDATE_HEALTH = _ONLINE_UPDATE.values(health=bindparam("b_health"))
_IN_CHUNK = 500  # ids per ``IN (...)``: well under every database's parameter limit
_OFFLINE_BATCH = 4 * _IN_CHUNK  # offline marks per transaction (a few statements of _IN_CHUNK)
_HEARTBEAT_BATCH = 2 * _IN_CHUNK  # last_seen marks per transaction (two statements)
_SHARED_MAX = 4096  # distinct hello values shared between links (a fleet has a few)
_HELLO_FIELDS = set(Hello.model_fields)  # every kept hello's fields set (never changed)
_OFFLINE_RETRY_S = 1.0  # the pause before a batch of offline marks the database refused is retried


HEALTH_STEP_PERCENT = 10.0
"""How far CPU or memory use (in points of percent) must move from what was last published for
a heartbeat to publish ``device.health``."""


def health_changed(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """Whether ``after`` says something ``before`` (the health last published) did not: health
    that appears or goes, a different device condition, a restarted machine (its uptime went
    back), CPU or memory use moved by :data:`HEALTH_STEP_PERCENT` or more, a field added or
    dropped. The uptime going forward and small wobbles of load are not news."""
    if before is None or after is None:
        return before is not after
    if before.keys() != after.keys():
        return True
    for key, value in after.items():
        old = before[key]
        if key == "uptime_seconds":
            if _number(value) and _number(old) and value < old:
                return True
        elif key in ("cpu_percent", "memory_percent") and _number(value) and _number(old):
            if abs(value - old) >= HEALTH_STEP_PERCENT:
                return True
        elif value != old:
            return True
    return False


def _number(value: object) -> bool:
    return type(value) is float or type(value) is int  # not a bool, nor a subclass


def restart_spread(links: int) -> float:
    """Over how many seconds ``links`` agents are told to come back after a stop."""
    return min(RESTART_SPREAD_MAX_S, max(RESTART_SPREAD_MIN_S, links / RESTART_LINKS_PER_S))


def restart_delay(spread: float) -> float:
    """One agent's delay before coming back: :data:`RESTART_DELAY_S` plus its share of
    ``spread`` (uniform: the agents arrive at an even rate)."""
    return RESTART_DELAY_S + random.uniform(0, spread)


class LinkPresence(Protocol):
    """Told when a link starts and stops being held here: how replicas know which one holds a
    device (:class:`~remotehands.server.cluster.router.NatsRouter`)."""

    async def link_attached(self, link: AgentLink) -> None:
        """``link`` is held here now (its device written online); never raises."""
        ...

    async def link_detached(self, link: AgentLink, marked_offline: bool) -> None:
        """``link`` ended (another may hold its device already), and whether its end wrote the
        device offline; never raises."""
        ...


class LinkTransport(Protocol):
    """One WebSocket to an agent, as the hub sees it (the endpoint adapts Starlette's)."""

    async def send(self, frame: str | bytes) -> None:
        """Write one frame; raises :class:`~remotehands.errors.DeviceOfflineError` when the
        connection is gone."""
        ...

    async def receive(self) -> str | bytes | None:
        """The next frame, or ``None`` once the agent has gone."""
        ...

    def send_now(self, frame: str | bytes) -> bool:
        """Write one frame at once and return True when that needs no wait (no back-pressure
        from the agent's side); otherwise write nothing and return False (then :meth:`send`
        it: the caller takes its lock and deadline). Raises
        :class:`~remotehands.errors.DeviceOfflineError` when the connection is gone."""
        ...

    def deliver(self, on_frame: Callable[[str | bytes], None] | None) -> bool:
        """Hand each frame to ``on_frame`` as it is read, frames already read first, instead
        of through :meth:`receive` (which then answers only the end); ``None`` stops it.
        False: this transport cannot, and frames keep coming through :meth:`receive`."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the connection; never raises."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class LinkIdentity:
    """Who an authenticated agent speaks for: what a link keeps of its device's row (the row
    itself is not kept for the link's life)."""

    device_id: str
    name: str
    tags: list[str]

    @classmethod
    def of(cls, device: Device) -> LinkIdentity:
        """The identity of a device row."""
        return cls(device.id, device.name, [str(t) for t in device.tags or ()])


class _Call:
    """A request started by :meth:`AgentLink.call`: settled like the future of
    :meth:`AgentLink.request` (by the reply, the link's end), or by its own timer."""

    __slots__ = ("_action", "_done", "_id", "_link", "_timeout_s", "_timer")

    def __init__(
        self,
        link: AgentLink,
        request_id: str,
        action: str,
        timeout_s: float,
        done: Callable[[Any, RemoteHandsError | None], None],
    ) -> None:
        self._link = link
        self._id = request_id
        self._action = action
        self._timeout_s = timeout_s
        self._done: Callable[[Any, RemoteHandsError | None], None] | None = done
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self._expire)

    def done(self) -> bool:
        return self._done is None

    def set_result(self, result: Any) -> None:
        self._settle(result, None)

    def set_exception(self, error: BaseException) -> None:
        if not isinstance(error, RemoteHandsError):
            error = DeviceError(f"device {self._link.device_id}: {error}")
        self._settle(None, error)

    def _expire(self) -> None:
        self._link._pending.pop(self._id, None)
        self._settle(
            None,
            DeviceTimeoutError(
                f"device {self._link.device_id} did not answer {self._action} within "
                f"{self._timeout_s:g} s"
            ),
        )

    def _settle(self, result: Any, error: RemoteHandsError | None) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        self._timer.cancel()
        try:
            done(result, error)
        except Exception:  # the caller's callback must not break the link's reader
            logger.exception("agent link %s: answering %s failed", self._link.device_id,
                             self._action)  # fmt: skip


class AgentLink:
    """The link to one device's agent: requests out, replies and heartbeats in."""

    # ten thousand of them: no per-instance __dict__
    __slots__ = (
        "_deadline",
        "_failure",
        "_hub",
        "_ids",
        "_pending",
        "_send_lock",
        "_task",
        "_transfers",
        "_transport",
        "_watches",
        "close_code",
        "closed",
        "connected_at",
        "device_id",
        "health",
        "hello",
        "last_frame_at",
        "last_frame_mono",
        "name",
        "online_written",
        "published_health",
        "stored_health",
        "superseded",
        "tags",
    )

    def __init__(
        self,
        hub: LinkHub,
        identity: LinkIdentity,
        hello: Hello,
        transport: LinkTransport,
    ) -> None:
        self.device_id = identity.device_id
        self.name = identity.name
        self.tags = identity.tags
        self.health: dict[str, Any] | None = (
            hello.health.model_dump() if hello.health is not None else None
        )
        """The health the agent last reported (its hello's, then each heartbeat's): live."""
        self.hello = hub._compact(hello, identity)
        """What the agent said in its hello (its health in :attr:`health`)."""
        self.published_health: dict[str, Any] | None = None
        """The health last published in ``device.health`` (and written to the database): none
        yet, so that the first heartbeat of a link is published (``device.online`` carries no
        health)."""
        self.stored_health = self.health
        """The health last written to the database (the online mark writes the hello's): the
        same object as :attr:`health` when nothing newer came since."""
        self.connected_at = hub.now()
        self.last_frame_at = self.connected_at
        self.last_frame_mono = hub.clock()
        """When the last frame came, by the hub's monotonic clock (what silence is measured by)."""
        self._hub = hub
        self._transport = transport
        self._pending: dict[str, asyncio.Future[Any] | _Call] = {}
        self._ids = itertools.count(1)
        self._send_lock = asyncio.Lock()
        self._deadline: asyncio.Timeout | None = None
        self._failure: Exception | None = None
        """What a frame handed over directly failed with, for run() to raise."""
        self._task: asyncio.Task[Any] | None = None
        self.closed = False
        self.close_code: int | None = None
        self.online_written = False
        """Whether this link marked its device online (then it owes the offline mark)."""
        self.superseded = False
        """Whether something else took over the device's status (a newer link, a deletion,
        the shutdown), so this link must not mark it offline when it ends."""
        # made on first use: most of ten thousand idle links never stream nor transfer
        self._watches: LinkWatches | None = None
        self._transfers: LinkTransfers | None = None

    def __repr__(self) -> str:
        return f"<AgentLink {self.device_id} {'closed' if self.closed else 'open'}>"

    @property
    def watches(self) -> LinkWatches:
        """The screen streams on this link."""
        if self._watches is None:
            self._watches = LinkWatches(self.device_id, self.send)
            if self.closed:
                self._watches.close(DeviceOfflineError(self._gone_details()))
        return self._watches

    @property
    def transfers(self) -> LinkTransfers:
        """The chunked transfers on this link."""
        if self._transfers is None:
            self._transfers = LinkTransfers(self.device_id, self.send)
            if self.closed:
                self._transfers.close(DeviceOfflineError(self._gone_details()))
        return self._transfers

    def _gone_details(self) -> str:
        return f"device {self.device_id} went offline: link closed"

    @property
    def pending(self) -> int:
        """How many requests wait for a reply."""
        return len(self._pending)

    async def request(self, action: str, params: dict[str, Any], timeout_s: float) -> Any:
        """Send ``action`` to the agent and wait for its reply; see
        :meth:`remotehands.server.router.DeviceRouter.request`."""
        if self.closed:
            raise DeviceOfflineError(f"device {self.device_id} is offline: its link just closed")
        request_id, frame = self._request_frame(action, params, timeout_s)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout_s):
                await self.send(frame)
                return await future
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"device {self.device_id} did not answer {action} within {timeout_s:g} s"
            ) from err
        finally:
            self._pending.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # failed by close() while the write itself failed: seen

    def _request_frame(
        self, action: str, params: dict[str, Any], timeout_s: float
    ) -> tuple[str, str | bytes]:
        """A new request's id, and its frame."""
        request_id = str(next(self._ids))
        frame = encode(
            {
                "type": "request",
                "id": request_id,
                "action": action,
                "params": params,
                "timeout_ms": max(1, round(timeout_s * 1000)),
            }
        )
        return request_id, frame

    def call(
        self,
        action: str,
        params: dict[str, Any],
        timeout_s: float,
        done: Callable[[Any, RemoteHandsError | None], None],
    ) -> bool:
        """Start ``action`` without awaiting it: :meth:`request` for a caller that answers
        from a callback (no task waits for the reply, and none is woken by it).

        The request is written now, and ``done(result, None)`` or ``done(None, error)`` is
        called once: from the link's reader when the reply comes, or with the errors
        :meth:`request` raises (a :class:`~remotehands.errors.DeviceTimeoutError` after
        ``timeout_s``, a :class:`~remotehands.errors.DeviceOfflineError` when the link
        closes). Returns False, having started nothing (``done`` is never called), when the
        request cannot be written at once (the link closed, another writer, a full socket):
        await :meth:`request` instead.
        """
        if self.closed or self._send_lock.locked():
            return False
        request_id, frame = self._request_frame(action, params, timeout_s)
        try:
            if not self._transport.send_now(frame):
                return False
        except DeviceOfflineError:
            return False  # request() says so in its own words
        self._pending[request_id] = _Call(self, request_id, action, timeout_s, done)
        return True

    async def send(self, frame: str | bytes) -> None:
        """Write one frame to the agent, one writer at a time, within :data:`SEND_TIMEOUT_S`."""
        if not self._send_lock.locked() and self._transport.send_now(frame):
            # the usual case: nobody else is writing and the write could not wait, so it could
            # not interleave with another one or run late (a lock and a deadline cost more)
            return
        try:
            async with self._send_lock, asyncio.timeout(SEND_TIMEOUT_S):
                if self.closed:  # closed while this write waited its turn
                    raise DeviceOfflineError(
                        f"device {self.device_id} is offline: its link just closed"
                    )
                await self._transport.send(frame)
        except TimeoutError:
            # An agent that does not read its socket is as good as gone.
            await self.close(CLOSE_GOING_AWAY, "the agent stopped reading its link")
            raise DeviceOfflineError(
                f"device {self.device_id} is offline: its agent stopped reading the link"
            ) from None

    async def run(self) -> None:
        """Read frames until the agent goes, sends garbage, or :meth:`close` is called (from
        another task: the hub's watchdog closes a link silent for too long)."""
        self._task = asyncio.current_task()
        try:
            try:
                # No deadline of its own: close() sets one to interrupt a read in progress, and
                # so does a frame handed over directly that fails (_deliver).
                async with asyncio.timeout(None) as deadline:
                    self._deadline = deadline
                    direct = self._transport.deliver(self._deliver)
                    try:
                        while not self.closed:
                            frame = await self._transport.receive()
                            if frame is None:
                                return
                            self._on_frame(frame)
                    finally:
                        if direct:
                            self._transport.deliver(None)
            except TimeoutError:
                if self._failure is None:
                    return  # close() interrupted the read: nothing more to do
                raise self._failure from None
        except (ValidationError, pydantic.ValidationError) as err:
            logger.warning("agent link %s: protocol error, closing: %s", self.device_id, err)
            reason = err.details if isinstance(err, ValidationError) else "invalid message"
            await self.close(CLOSE_PROTOCOL_ERROR, reason)
        finally:
            self._deadline = None

    def _on_frame(self, frame: str | bytes) -> None:
        self.last_frame_mono = self._hub.clock()
        self.last_frame_at = self._hub.now()
        self._handle(decode(frame))

    def _deliver(self, frame: str | bytes) -> None:
        """A frame handed over by the transport as it was read (:meth:`LinkTransport.deliver`):
        handled at once, without a wake-up of :meth:`run`'s task; a failure is raised there."""
        if self.closed or self._failure is not None:
            return
        try:
            self._on_frame(frame)
        except Exception as err:  # noqa: BLE001 -- raised again in run(), as a read's would be
            self._failure = err
            if self._deadline is not None and not self._deadline.expired():
                self._deadline.reschedule(asyncio.get_running_loop().time())

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "heartbeat":  # the most frequent by far
            self.health = heartbeat_health(message)
            self._hub._on_heartbeat(self)
        elif kind == "reply":
            self._on_reply(Reply.model_validate(message))
        elif kind in TRANSFER_MESSAGES:
            self.transfers.handle(message)
        elif kind in STREAM_MESSAGES:
            self.watches.handle(message)
        else:
            raise ValidationError(f"unexpected link message type {kind!r} from an agent")

    def _on_reply(self, reply: Reply) -> None:
        future = self._pending.pop(reply.id, None)
        if future is None:
            # Usually a reply that came after its request timed out: harmless.
            logger.info("agent link %s: reply to unknown request %s", self.device_id, reply.id)
            return
        if future.done():
            return
        if reply.error is not None:
            future.set_exception(
                error_from_wire(
                    reply.error.get("error", "device_error"),
                    reply.error.get("details", "the agent reported an error without details"),
                )
            )
        else:
            future.set_result(reply.result)

    def fail_pending(self, error: RemoteHandsError) -> None:
        """Fail every request still waiting for a reply."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def close(self, code: int, reason: str) -> None:
        """Close the link at once: fail waiting requests, send the close frame, stop reading."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        gone = DeviceOfflineError(f"device {self.device_id} went offline: link closed ({reason})")
        self.fail_pending(gone)
        if self._watches is not None:
            self._watches.close(gone)
        if self._transfers is not None:
            self._transfers.close(gone)
        # Interrupt a read in progress in the link's own task (never our own: a timeout that
        # fires in a task leaving its block would cancel that task's next await).
        if (
            self._deadline is not None
            and self._task is not None
            and self._task is not asyncio.current_task()
            and not self._deadline.expired()
        ):
            self._deadline.reschedule(asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._transport.close(code, reason[:_MAX_REASON])


class LinkHub:
    """The agent links of this process by device id; an async context manager.

    Entering starts the background work (batched heartbeat writes, the stale-device sweeper);
    leaving closes every link and marks those devices offline.
    """

    def __init__(
        self,
        *,
        db: Database,
        events: EventBus,
        heartbeat_interval_s: float,
        offline_after_s: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _now,
    ) -> None:
        """``heartbeat_interval_s`` is told to agents in their welcome; a link that carried no
        frame for ``offline_after_s`` by ``clock`` (monotonic seconds) is closed as silent.
        ``now`` (aware UTC) stamps what is written: ``last_seen``."""
        self._db = db
        self._events = events
        self.heartbeat_interval_s = heartbeat_interval_s
        self.offline_after_s = offline_after_s
        """A device whose agent sent nothing for this long is offline."""
        self.clock = clock
        """Monotonic seconds: heartbeats and silence are measured by it."""
        self.now = now
        """Aware UTC datetimes: ``last_seen`` and the stale sweep are measured by it."""
        self._links: dict[str, AgentLink] = {}
        self._attaching: set[str] = set()
        """Devices whose link is being attached: online in the database, not yet in _links."""
        self._status_locks: dict[str, asyncio.Lock] = {}
        self._seen: dict[str, AgentLink] = {}
        """Links that beat since the last write: their ``last_seen`` is due."""
        self._health_due: dict[str, AgentLink] = {}
        """Links whose health changed meaningfully since the last write."""
        self._dirty_event = asyncio.Event()
        self._online = Batcher(self._write_online, max_batch=_IN_CHUNK)
        """Online marks of the hellos that arrive together, written in one transaction."""
        self._offline_pending: dict[str, tuple[AgentLink, str]] = {}
        """Ended links whose devices are still to be written offline (with why), by device."""
        self._offline_writing: dict[str, asyncio.Future[None]] = {}
        """Devices whose offline mark is being written now: done when the write is over."""
        self._offline_event = asyncio.Event()
        self.offline_batches = 0
        """Transactions that marked devices offline since the start (a counter)."""
        self._tasks: asyncio.TaskGroup | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False
        self.presence: LinkPresence | None = None
        """Told when links start and stop being held here (replicas); None: one server."""
        self._shared: dict[tuple[Any, ...], Any] = {}
        """One copy of the hello values many links have alike (see :meth:`_compact`)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.sweep_stale(at_start=True)
        except Exception:
            logger.exception("could not mark the devices of a previous run offline")
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._loops = [
            self._tasks.create_task(self._write_heartbeats(), name="link-heartbeat-writer"),
            self._tasks.create_task(self._write_offline_marks(), name="link-offline-writer"),
            self._tasks.create_task(self._sweep_stale(), name="link-stale-sweeper"),
            self._tasks.create_task(self._watch_silence(), name="link-silence-watchdog"),
            self._tasks.create_task(self._follow_tag_changes(), name="link-tag-follower"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_for_restart()
        for task in self._loops:
            task.cancel()
        if self._tasks is not None:
            await self._tasks.__aexit__(exc_type, exc, tb)

    async def close_for_restart(self) -> None:
        """Close every link telling its agent when to come back, refuse new links (with the
        same word), and mark the devices offline.

        The server's HTTP layer calls it when a graceful stop begins, before it closes the
        sockets itself (see :func:`remotehands.server.app.announce_shutdown`); leaving the hub
        calls it again for whatever is left. Each agent gets its own delay
        (:func:`restart_delay`), so that a fleet comes back spread over a few seconds rather
        than in the same millisecond."""
        self._closing = True
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            link.superseded = True
        spread = restart_spread(len(links))
        async with asyncio.TaskGroup() as group:
            for link in links:
                group.create_task(
                    link.close(CLOSE_GOING_AWAY, restart_reason(restart_delay(spread)))
                )
        await self._mark_offline([link for link in links if link.online_written], "shutdown")
        # and the links that ended just before, whose offline marks were not written yet
        for writing in set(self._offline_writing.values()):
            await asyncio.shield(writing)
        ended, self._offline_pending = self._offline_pending, {}
        await self._mark_offline([link for link, _ in ended.values()], "link closed")
        for link, _ in ended.values():
            await self._presence_detached(link, True)

    def _compact(self, hello: Hello, identity: LinkIdentity) -> Hello:
        """``hello`` as a link keeps it for days: without its health (the link keeps that
        live), and with the values most links of a fleet have alike (capabilities, screens,
        versions) shared between them instead of one copy per link. The shared values are
        never changed in place; at most :data:`_SHARED_MAX` distinct ones are kept, so that
        odd agents cannot grow the table without bound."""
        capabilities = [sys.intern(c) for c in hello.capabilities]
        # built without validation (the values are the validated ones), and with one shared
        # set of field names instead of a copy per link
        return Hello.model_construct(
            _HELLO_FIELDS,
            type="hello",
            device_id=(
                identity.device_id if hello.device_id == identity.device_id else hello.device_id
            ),
            agent_version=sys.intern(hello.agent_version),
            driver=sys.intern(hello.driver),
            device_type=sys.intern(hello.device_type),
            capabilities=self._share(("capabilities", *capabilities), capabilities),
            screens=self._share(("screens", repr(hello.screens)), hello.screens),
            hardware_id=hello.hardware_id,
            health=None,
        )

    def _share(self, key: tuple[Any, ...], value: Any) -> Any:
        shared = self._shared.get(key)
        if shared is not None:
            return shared
        if len(self._shared) < _SHARED_MAX:
            self._shared[key] = value
        return value

    # -- queries -----------------------------------------------------------------------------

    def get(self, device_id: str) -> AgentLink | None:
        """The live link of ``device_id``, if this process holds one."""
        link = self._links.get(device_id)
        return link if link is not None and not link.closed else None

    @property
    def links(self) -> int:
        """How many agent links this process holds."""
        return len(self._links)

    def device_ids(self) -> list[str]:
        """The devices whose links this process holds."""
        return list(self._links)

    # -- one link's life ---------------------------------------------------------------------

    async def serve(
        self,
        identity: LinkIdentity,
        hello: Hello,
        transport: LinkTransport,
        *,
        attached: Callable[[], None] | None = None,
    ) -> None:
        """Run the link of an authenticated agent that said hello, until it ends.

        Fences an older link of the same device, marks the device online, welcomes the agent,
        then reads its frames; when the link ends, the device goes offline (unless a newer link
        or a deletion took it over). A device deleted in the meantime is refused with
        :data:`~remotehands.protocol.link.CLOSE_CREDENTIAL_REFUSED`. ``attached`` is called
        once the database work of the start is done (welcomed or refused): the endpoint lets
        the next agent in then.
        """
        try:
            link = await self._open(identity, hello, transport)
        finally:
            if attached is not None:
                attached()
        # the link keeps what it needs of them: not this frame for the link's days
        del identity, hello
        if link is None:
            return
        try:
            await link.run()
        finally:
            await self._detach(link)

    async def _open(
        self, identity: LinkIdentity, hello: Hello, transport: LinkTransport
    ) -> AgentLink | None:
        """The link of ``identity``, attached and welcomed; None when it was refused or left."""
        if self._closing:
            await transport.close(
                CLOSE_GOING_AWAY, restart_reason(restart_delay(restart_spread(1)))
            )
            return None
        link = AgentLink(self, identity, hello, transport)
        try:
            await self._attach(link)
        except AuthError:
            await link.close(CLOSE_CREDENTIAL_REFUSED, "device credential refused")
        except DeviceOfflineError:  # the agent left before its welcome
            pass
        except BaseException:
            await self._detach(link)
            raise
        else:
            if not self._closing:
                return link
            # the stop began while it was welcomed: it missed the word
            await link.close(CLOSE_GOING_AWAY, restart_reason(restart_delay(restart_spread(1))))
        await self._detach(link)
        return None

    def _status_lock(self, device_id: str) -> asyncio.Lock:
        lock = self._status_locks.get(device_id)
        if lock is None:
            lock = self._status_locks[device_id] = asyncio.Lock()
        return lock

    async def _attach(self, link: AgentLink) -> None:
        device_id = link.device_id
        async with self._status_lock(device_id):
            self._attaching.add(device_id)
            try:
                await self._attach_locked(link)
            finally:
                self._attaching.discard(device_id)
        await self._presence_attached(link)
        self._publish(
            link,
            "device.online",
            name=link.name,
            agent_version=link.hello.agent_version,
            driver=link.hello.driver,
            device_type=link.hello.device_type,
            capabilities=list(link.hello.capabilities),
        )

    async def _attach_locked(self, link: AgentLink) -> None:
        """Fence an older link of the device, write it online, welcome it, hold it."""
        device_id = link.device_id
        # the offline mark of the device's previous link must not land after this online one:
        # wait for it if it is being written, drop it if it is not yet
        while (writing := self._offline_writing.get(device_id)) is not None:
            await asyncio.shield(writing)
        self._offline_pending.pop(device_id, None)
        old = self._links.pop(device_id, None)
        if old is not None:
            old.superseded = True
            logger.info("agent link %s: a new connection fences the old one", device_id)
            await old.close(CLOSE_FENCED, "replaced by a newer connection of this device")
        if not await self._mark_online(link):
            raise AuthError(f"device {device_id} no longer exists")
        link.online_written = True
        welcome = {
            "type": "welcome",
            "device_id": device_id,
            "heartbeat_interval_s": self.heartbeat_interval_s,
        }
        await link.send(encode(welcome))
        self._links[device_id] = link

    async def _detach(self, link: AgentLink) -> None:
        await link.close(CLOSE_GOING_AWAY, "link ended")
        async with self._status_lock(link.device_id):
            if self._links.get(link.device_id) is link:
                del self._links[link.device_id]
            self._seen.pop(link.device_id, None)
            self._health_due.pop(link.device_id, None)  # the offline mark writes the last
            marked = link.online_written and not link.superseded
            if marked:
                link.superseded = True
                self._offline_pending[link.device_id] = (link, "link closed")
                self._offline_event.set()
        if not marked:
            # a marked link tells the other replicas once its offline mark is written (in
            # _write_offline_marks), so that none acts on the database before it lands
            await self._presence_detached(link, False)

    # -- presence hooks (replicas) -----------------------------------------------------------

    async def _presence_attached(self, link: AgentLink) -> None:
        if self.presence is not None:
            await self.presence.link_attached(link)

    async def _presence_detached(self, link: AgentLink, marked_offline: bool) -> None:
        if self.presence is not None and link.online_written:
            await self.presence.link_detached(link, marked_offline)

    async def reassert_online(self, device_id: str) -> bool:
        """Write the device online again if this process holds its link: another replica whose
        older link of it ended marked it offline after this one marked it online. Returns
        whether it wrote."""
        async with self._status_lock(device_id):
            link = self.get(device_id)
            if link is None or not link.online_written:
                return False
            if not await self._mark_online(link):
                return False
        self._publish(link, "device.online", name=link.name,
                      agent_version=link.hello.agent_version, driver=link.hello.driver,
                      device_type=link.hello.device_type,
                      capabilities=list(link.hello.capabilities))  # fmt: skip
        return True

    async def disconnect(
        self, device_id: str, code: int = CLOSE_GOING_AWAY, reason: str = "disconnected"
    ) -> bool:
        """Close the device's link at once, without marking it offline (the caller owns its
        status: a deleted device has none). Returns whether a link was held."""
        # Under the status lock, so that a link being attached right now is cut as well.
        async with self._status_lock(device_id):
            link = self._links.pop(device_id, None)
            if link is None:
                return False
            link.superseded = True
            await link.close(code, reason)
            return True

    # -- database and events -----------------------------------------------------------------

    def _publish(self, link: AgentLink, kind: str, **fields: Any) -> None:
        self._events.publish(
            {"type": kind, "device_id": link.device_id, "tags": link.tags, **fields}
        )

    async def _mark_online(self, link: AgentLink) -> bool:
        """Write the device online with what its hello says; False when it no longer exists.
        Hellos that arrive together are written together (:meth:`_write_online`)."""
        async with asyncio.timeout(2 * DB_TIMEOUT_S):  # its batch's turn, then its write
            return await self._online.submit(link)

    async def _write_online(self, links: list[AgentLink]) -> list[bool]:
        """Mark the devices of ``links`` online in one transaction; whether each still exists."""
        with_health: list[dict[str, Any]] = []
        without_health: list[dict[str, Any]] = []
        for link in links:
            hello = link.hello
            row: dict[str, Any] = {
                "b_id": link.device_id,
                "b_agent_version": hello.agent_version,
                "b_driver": hello.driver,
                "b_device_type": hello.device_type,
                "b_capabilities": list(hello.capabilities),
                "b_screens": [screen.model_dump() for screen in hello.screens],
                "b_hardware_id": hello.hardware_id,
                "b_seen": link.connected_at,
            }
            if link.health is not None:
                row["b_health"] = link.health
                with_health.append(row)
            else:
                without_health.append(row)
        ids = [link.device_id for link in links]
        # every batch of the hub writes its rows in id order: see _write_offline
        with_health.sort(key=_row_id)
        without_health.sort(key=_row_id)
        found: set[str] = set()

        async def write() -> None:
            found.clear()
            async with self._db.session() as session:
                if with_health:
                    await session.execute(_ONLINE_UPDATE_HEALTH, with_health)
                if without_health:
                    await session.execute(_ONLINE_UPDATE, without_health)
                # in the same transaction, after the writes: a device deleted meanwhile is gone
                for chunk in _chunks(ids, _IN_CHUNK):
                    found.update(
                        await session.scalars(select(Device.id).where(Device.id.in_(chunk)))
                    )
                await session.commit()

        async with asyncio.timeout(DB_TIMEOUT_S):
            await _retry_deadlocks(write)
        return [device_id in found for device_id in ids]

    async def _mark_offline(self, links: list[AgentLink], reason: str) -> None:
        """Mark the devices of ``links`` offline and publish it; logs instead of raising."""
        if not links:
            return
        by_id = {link.device_id: link for link in links}
        try:
            async with asyncio.timeout(DB_TIMEOUT_S):
                await self._write_offline(list(by_id.values()))
        except Exception:
            logger.exception("could not mark %d device(s) offline", len(by_id))
            return
        for link in by_id.values():
            self._publish(link, "device.offline", reason=reason)

    async def _write_offline_marks(self) -> None:
        """Write the offline marks of ended links in batches (one transaction for all that
        ended since the previous write, up to :data:`_OFFLINE_BATCH`), then publish
        ``device.offline``. A batch the database did not take (busy with a bulk action's audit,
        say) stays pending and is tried again after a pause: no device is left "online" for
        the sweeper, and no link waits for the database as it ends."""
        while True:
            await self._offline_event.wait()
            self._offline_event.clear()
            while self._offline_pending:
                ids = sorted(self._offline_pending)[:_OFFLINE_BATCH]
                batch = {device_id: self._offline_pending.pop(device_id) for device_id in ids}
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._offline_writing.update(dict.fromkeys(ids, done))
                written = False
                try:
                    async with asyncio.timeout(DB_TIMEOUT_S):
                        await self._write_offline([link for link, _ in batch.values()])
                    written = True
                except Exception:
                    logger.exception("could not mark %d device(s) offline; trying again",
                                     len(batch))  # fmt: skip
                    for device_id, item in batch.items():
                        self._offline_pending.setdefault(device_id, item)
                finally:
                    for device_id in ids:
                        self._offline_writing.pop(device_id, None)
                    done.set_result(None)
                if not written:
                    await asyncio.sleep(_OFFLINE_RETRY_S)
                    continue
                for link, reason in batch.values():
                    self._publish(link, "device.offline", reason=reason)
                    await self._presence_detached(link, True)

    async def _write_offline(self, links: list[AgentLink]) -> None:
        """Mark the devices of ``links`` offline (those still online) in one transaction,
        with the last health each reported where it was not written yet."""
        ids = sorted({link.device_id for link in links})
        health = sorted(
            (
                {"b_id": link.device_id, "b_health": link.health}
                for link in {link.device_id: link for link in links}.values()
                if link.health is not link.stored_health
            ),
            key=_row_id,
        )
        self.offline_batches += 1

        async def write() -> None:
            async with self._db.session() as session:
                for chunk in _chunks(ids, _IN_CHUNK):
                    if self._db.dialect != "sqlite":
                        # rows locked in id order, as every batch of the hub locks them, so
                        # that two batches over the same devices queue instead of deadlocking
                        await session.execute(
                            select(Device.id)
                            .where(Device.id.in_(chunk))
                            .order_by(Device.id)
                            .with_for_update()
                        )
                    await session.execute(
                        update(Device)
                        .where(Device.id.in_(chunk), Device.status == "online")
                        .values(status="offline", last_seen=self.now())
                    )
                if health:
                    await session.execute(_HEALTH_UPDATE, health)
                await session.commit()

        async with asyncio.timeout(DB_TIMEOUT_S):
            await _retry_deadlocks(write)

    def _on_heartbeat(self, link: AgentLink) -> None:
        self._seen[link.device_id] = link
        self._dirty_event.set()
        health = link.health
        stored = health_changed(link.stored_health, health)
        # the two are the same object but on a link's first beats: one comparison then
        published = (
            stored
            if link.published_health is link.stored_health
            else health_changed(link.published_health, health)
        )
        if stored:
            link.stored_health = health
            self._health_due[link.device_id] = link
        if published:
            link.published_health = health
            self._publish(link, "device.health", health=health)

    async def _write_heartbeats(self) -> None:
        """Write what heartbeats brought, at most every quarter interval (and every second):
        ``last_seen`` of all the links that beat since the previous write, in statements of
        :data:`_IN_CHUNK` ids stamped with the time of the write, and the health of those
        whose health changed meaningfully."""
        gap = min(1.0, self.heartbeat_interval_s / 4)
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            seen, self._seen = self._seen, {}
            due, self._health_due = self._health_due, {}
            # in id order, as every batch of the hub: see _write_offline
            ids = sorted(device_id for device_id, link in seen.items() if not link.closed)
            health = sorted(
                (
                    {"b_id": link.device_id, "b_health": link.health}
                    for link in due.values()
                    if not link.closed
                ),
                key=_row_id,
            )
            stamp = self.now()
            # a few transactions of a bounded size: one slow write loses a few heartbeats'
            # marks (the next heartbeats write them again), never the whole fleet's
            for start in range(0, max(len(ids), len(health)), _HEARTBEAT_BATCH):
                id_chunk = ids[start : start + _HEARTBEAT_BATCH]
                health_chunk = health[start : start + _HEARTBEAT_BATCH]

                try:
                    async with asyncio.timeout(DB_TIMEOUT_S):
                        await _retry_deadlocks(
                            functools.partial(self._write_beats, id_chunk, health_chunk, stamp)
                        )
                except Exception:
                    logger.exception(
                        "could not write %d heartbeat(s)", max(len(id_chunk), len(health_chunk))
                    )
                    # the health again with the next write (last_seen: with the next beat)
                    for row in health_chunk:
                        self._health_due.setdefault(str(row["b_id"]), due[str(row["b_id"])])
                    self._dirty_event.set()
            await asyncio.sleep(gap)

    async def _write_beats(
        self, ids: list[str], health: list[dict[str, Any]], stamp: datetime
    ) -> None:
        """One transaction of :meth:`_write_heartbeats`."""
        async with self._db.session() as session:
            for part in _chunks(ids, _IN_CHUNK):
                await session.execute(_SEEN_UPDATE, {"b_ids": part, "b_seen": stamp})
            if health:
                await session.execute(_HEALTH_UPDATE, health)
            await session.commit()

    async def _follow_tag_changes(self) -> None:
        """Keep the tags and names of live links current, so that their events reach exactly
        the subscribers allowed to see the device now, and device actions can be authorised
        from the link without a database read."""
        with self._events.subscribe(types=("device.updated",)) as updates:
            async for event in updates:
                link = self._links.get(str(event.get("device_id")))
                if link is None:
                    continue
                tags = event.get("tags")
                if isinstance(tags, list):
                    link.tags = [str(t) for t in tags]
                device = event.get("device")
                if isinstance(device, dict) and isinstance(device.get("name"), str):
                    link.name = device["name"]

    async def _watch_silence(self) -> None:
        """Close the links silent for too long, checking several times per heartbeat interval
        (at least once a second), so that the offline bound is kept within a fraction of an
        interval."""
        period = min(1.0, self.heartbeat_interval_s / 4)
        while True:
            try:
                await self.close_silent()
            except Exception:
                logger.exception("silent link check failed")
            await asyncio.sleep(period)

    async def close_silent(self) -> list[str]:
        """One check: close every link that carried no frame for :attr:`offline_after_s` by
        :attr:`clock` (its device then goes offline as the link ends); returns their ids."""
        cutoff = self.clock() - self.offline_after_s
        silent = [link for link in self._links.values() if link.last_frame_mono <= cutoff]
        reason = f"no heartbeat for {self.offline_after_s:g} s"
        async with asyncio.TaskGroup() as group:
            for link in silent:
                logger.warning(
                    "agent link %s: no frame for %.1f s, marking the device offline",
                    link.device_id,
                    self.offline_after_s,
                )
                group.create_task(link.close(CLOSE_GOING_AWAY, reason))
        return [link.device_id for link in silent]

    async def _sweep_stale(self) -> None:
        """Mark offline the devices left ``online`` that no link refreshed for too long."""
        while True:
            try:
                await self.sweep_stale()
            except Exception:
                logger.exception("stale device sweep failed")
            await asyncio.sleep(self.heartbeat_interval_s)

    async def sweep_stale(self, *, at_start: bool = False) -> list[str]:
        """One sweep; returns the ids it marked offline.

        ``at_start`` is the sweep of a server that just started: no link survives a restart,
        so on SQLite (one server process) every device left online is offline at once, not
        after the silence bound; on PostgreSQL, where other replicas may hold live links that
        refresh their devices every heartbeat, those not refreshed for two heartbeats."""
        # The margin covers the batching of heartbeat writes.
        silence = self.offline_after_s + self.heartbeat_interval_s
        if at_start:
            silence = 0.0 if self._db.dialect == "sqlite" else 2 * self.heartbeat_interval_s
        cutoff = self.now() - timedelta(seconds=silence)
        stale_filter = (
            Device.status == "online",
            or_(Device.last_seen.is_(None), Device.last_seen <= cutoff),
        )
        async with asyncio.timeout(DB_TIMEOUT_S), self._db.session() as session:
            found = (
                await session.execute(select(Device.id, Device.tags).where(*stale_filter))
            ).all()
            # a link being attached wrote "online" and is not in _links yet: not stale
            live = self._links.keys() | self._attaching
            stale = [(row.id, row.tags) for row in found if row.id not in live]
            for chunk in _chunks([device_id for device_id, _ in stale], _IN_CHUNK):
                await session.execute(
                    update(Device)
                    .where(Device.id.in_(chunk), *stale_filter)
                    .values(status="offline")
                )
            await session.commit()
        for device_id, tags in stale:
            logger.info("device %s: no live link refreshes it, marking it offline", device_id)
            self._events.publish(
                {
                    "type": "device.offline",
                    "device_id": device_id,
                    "tags": list(tags or []),
                    "reason": "no heartbeat",
                }
            )
        return [device_id for device_id, _ in stale]


def _row_id(row: dict[str, Any]) -> str:
    return str(row["b_id"])


_DEADLOCK_RETRIES = 3


async def _retry_deadlocks(write: Callable[[], Awaitable[None]]) -> None:
    """Run ``write`` (one transaction), again when PostgreSQL chose it as a deadlock's victim
    (rolled back, so running it again is safe): a batch of bookkeeping must not be lost to a
    crossing transaction of the API's."""
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            await write()
            return
        except DBAPIError as err:
            if attempt + 1 == _DEADLOCK_RETRIES or not _is_deadlock(err):
                raise
            logger.info("a bookkeeping write met a deadlock; writing it again")


def _is_deadlock(err: DBAPIError) -> bool:
    state = getattr(err.orig, "sqlstate", None) or getattr(err.orig, "pgcode", None)
    return state == "40P01" or "deadlock detected" in str(err.orig)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
