"""A simulated agent: the reference peer of the agent link, for tests and benchmarks.

It speaks :mod:`remotehands.protocol.link` to a real server over a real WebSocket, with a tiny
in-memory behaviour instead of a driver: ``screenshot`` answers a small JPEG-like blob (sent as a
binary frame, as images always are), input actions answer ``{"status": "ok"}``, the clipboard
remembers what was set. It can be told to stop answering, to stop its heartbeats, to send
garbage and to disconnect, so tests can drive every failure the server must survive::

    async with SimulatedAgent(ws_url, credential) as agent:
        ...  # the device is online while the block runs

:func:`enroll` makes devices and credentials for them through a server's public API, and
:func:`run_many` runs a crowd of agents (the benchmark's 1,000 devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from remotehands.errors import (
    AuthError,
    DeviceOfflineError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol.actions import ACTIONS_BY_NAME
from remotehands.protocol.link import CLOSE_CREDENTIAL_REFUSED, decode, encode

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_SCREENS",
    "Enrolled",
    "Handler",
    "SimulatedAgent",
    "enroll",
    "fake_jpeg",
    "run_many",
]

logger = logging.getLogger(__name__)

DEFAULT_CAPABILITIES: tuple[str, ...] = ("screen", "keyboard", "mouse", "clipboard")
DEFAULT_SCREENS: tuple[dict[str, int], ...] = ({"id": 0, "width": 1920, "height": 1080},)

Handler = Callable[[dict[str, Any]], Any | Awaitable[Any]]
"""Answers one action: takes its params, returns its result (or raises a RemoteHandsError)."""

_serial = itertools.count(1)


def fake_jpeg(size: int = 2048) -> bytes:
    """``size`` bytes that start and end like a JPEG (SOI, APP0 ... EOI): what a screenshot of
    the simulated screen carries. Not decodable; it only has to travel like an image."""
    body = max(0, size - 6)
    filler = (bytes(range(256)) * (body // 256 + 1))[:body]
    return b"\xff\xd8\xff\xe0" + filler + b"\xff\xd9"


class SimulatedAgent:
    """One simulated device's agent on the link; an async context manager (connects on enter).

    ``device_id_hint`` is put in the hello (the server checks it against the credential); left
    out, the server's welcome tells the agent who it is (:attr:`device_id`).
    ``heartbeat_interval_s`` overrides the interval the server asks for in its welcome.
    ``handlers`` replace or add behaviours by action name.
    """

    def __init__(
        self,
        ws_url: str,
        credential: str,
        *,
        device_id_hint: str | None = None,
        capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
        screens: Sequence[dict[str, int]] = DEFAULT_SCREENS,
        heartbeat_interval_s: float | None = None,
        handlers: dict[str, Handler] | None = None,
        image_bytes: int = 2048,
        agent_version: str = "0.1.0-sim",
        driver: str = "sim",
        device_type: str = "sim",
        hardware_id: str | None = None,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.ws_url = ws_url
        self.credential = credential
        self.device_id_hint = device_id_hint
        self.capabilities = list(capabilities)
        self.screens = [dict(s) for s in screens]
        self.heartbeat_interval_s = heartbeat_interval_s
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.image = fake_jpeg(image_bytes)
        self.agent_version = agent_version
        self.driver = driver
        self.device_type = device_type
        self.hardware_id = hardware_id or f"sim-{next(_serial)}"
        self.open_timeout_s = open_timeout_s

        self.device_id: str | None = device_id_hint
        self.welcome: dict[str, Any] | None = None
        self.answering = True
        """While False, requests are received (and recorded) but never answered."""
        self.heartbeating = True
        """While False, no heartbeats are sent (the server should mark the device offline)."""
        self.requests: deque[dict[str, Any]] = deque(maxlen=1000)
        """The latest requests received, oldest first."""
        self.requests_seen = 0
        self.heartbeats_sent = 0
        self.clipboard = ""
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def hello(self) -> dict[str, Any]:
        """The hello this agent sends."""
        return {
            "type": "hello",
            "device_id": self.device_id_hint or "",
            "agent_version": self.agent_version,
            "driver": self.driver,
            "device_type": self.device_type,
            "capabilities": self.capabilities,
            "screens": self.screens,
            "hardware_id": self.hardware_id,
            "health": self.health(),
        }

    def health(self) -> dict[str, float]:
        """The health a heartbeat carries."""
        return {
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "cpu_percent": 1.5,
            "memory_percent": 12.5,
        }

    async def connect(self) -> None:
        """Dial the server, say hello and wait for the welcome; then answer requests and send
        heartbeats in the background until :meth:`disconnect`.

        Raises :class:`~remotehands.errors.AuthError` when the server refuses the credential,
        :class:`~remotehands.errors.DeviceOfflineError` when it cannot be reached or closes
        the link before its welcome.
        """
        try:
            async with asyncio.timeout(self.open_timeout_s):
                ws = await connect(
                    self.ws_url,
                    additional_headers={"Authorization": f"Bearer {self.credential}"},
                    compression=None,
                    max_size=64 * 1024 * 1024,
                    # as the real agent: its heartbeat is the link's keepalive, no ping beside
                    ping_interval=None,
                    open_timeout=None,
                    close_timeout=2,
                )
                self._ws = ws
                await ws.send(encode(self.hello()))
                welcome = decode(await ws.recv())
        except ConnectionClosed as err:
            self._closed_by(err)
            if self.close_code == CLOSE_CREDENTIAL_REFUSED:
                raise AuthError(f"the server refused the credential: {self.close_reason}") from err
            raise DeviceOfflineError(
                f"the server closed the link before its welcome ({self.close_code} "
                f"{self.close_reason})"
            ) from err
        except InvalidStatus as err:
            raise DeviceOfflineError(f"the server answered {err.response.status_code}") from err
        except (OSError, InvalidHandshake, TimeoutError) as err:
            if self._ws is not None:  # connected, but no welcome in time
                self._ws.transport.abort()
            raise DeviceOfflineError(f"cannot reach {self.ws_url}: {err!r}") from err
        if welcome.get("type") != "welcome":
            await ws.close()
            raise ValidationError(f"expected a welcome, got {welcome.get('type')!r}")
        self.welcome = welcome
        self.device_id = str(welcome["device_id"])
        interval = self.heartbeat_interval_s or float(welcome["heartbeat_interval_s"])
        # Owned by this agent: stopped and awaited by disconnect(); they never raise.
        self._tasks = [
            asyncio.create_task(self._read(ws), name=f"simagent-read-{self.device_id}"),
            asyncio.create_task(self._beat(ws, interval), name=f"simagent-beat-{self.device_id}"),
        ]

    async def disconnect(self, code: int = 1000, reason: str = "agent stopping") -> None:
        """Close the link cleanly and stop the background work."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close(code, reason)
        await self._stop()

    async def drop(self) -> None:
        """Vanish without a close frame, as a machine that lost power would."""
        if self._ws is not None:
            self._ws.transport.abort()
        await self._stop()

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.closed.set()

    async def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        """Wait until the link is closed (by either side); returns the close code."""
        async with asyncio.timeout(timeout_s):
            await self.closed.wait()
        return self.close_code

    def _closed_by(self, err: ConnectionClosed) -> None:
        frame = err.rcvd or err.sent
        if self.close_code is None and frame is not None:
            self.close_code, self.close_reason = frame.code, frame.reason

    # -- misbehaviour on demand --------------------------------------------------------------

    def stop_answering(self) -> None:
        """Keep receiving requests but never reply (the server should time them out)."""
        self.answering = False

    def stop_reading(self) -> None:
        """Read nothing more from the socket (an agent stuck: what the server sends piles up in
        the socket's buffers until the server's writes must wait)."""
        if self._ws is not None:
            self._ws.transport.pause_reading()

    def stop_heartbeats(self) -> None:
        """Send no more heartbeats (the server should mark the device offline)."""
        self.heartbeating = False

    async def send_raw(self, frame: str | bytes) -> None:
        """Send any frame at all."""
        if self._ws is None:
            raise DeviceOfflineError("the simulated agent is not connected")
        await self._ws.send(frame)

    async def send_garbage(self) -> None:
        """Send a frame that is not a link message (the server should close the link)."""
        await self.send_raw("this is not JSON {")

    # -- behaviour ---------------------------------------------------------------------------

    async def _beat(self, ws: ClientConnection, interval_s: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval_s)
                if self.heartbeating:
                    await ws.send(encode({"type": "heartbeat", "health": self.health()}))
                    self.heartbeats_sent += 1
        except ConnectionClosed:
            return
        except Exception:
            logger.exception("simulated agent %s: heartbeat failed", self.device_id)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                message = decode(frame)
                if message.get("type") != "request":
                    continue
                self.requests.append(message)
                self.requests_seen += 1
                if self.answering:
                    await self._answer(ws, message)
        except ConnectionClosed as err:
            self._closed_by(err)
        except Exception:
            logger.exception("simulated agent %s: link failed", self.device_id)
            await ws.close(1011, "simulated agent failed")
        finally:
            if self.close_code is None and ws.close_code is not None:
                self.close_code, self.close_reason = ws.close_code, ws.close_reason
            self.closed.set()

    async def _answer(self, ws: ClientConnection, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "reply", "id": request["id"]}
        try:
            result = self.perform(str(request["action"]), dict(request.get("params") or {}))
            if inspect.isawaitable(result):
                result = await result
            reply["result"] = result
        except RemoteHandsError as err:
            reply["error"] = err.to_wire()
        await ws.send(encode(reply))

    def perform(self, action: str, params: dict[str, Any]) -> Any:
        """The result of ``action`` here: a handler's, or the built-in behaviour's."""
        handler = self.handlers.get(action)
        if handler is not None:
            return handler(params)
        spec = ACTIONS_BY_NAME.get(action)
        if spec is None:
            raise ValidationError(f"unknown action {action!r}")
        if spec.capability is not None and spec.capability not in self.capabilities:
            raise UnsupportedError(f"this device has no {spec.capability} capability")
        screen = self.screens[0] if self.screens else {"width": 0, "height": 0}
        if action in ("screenshot", "screenshot.region"):
            width = int(params.get("width", screen["width"]))
            height = int(params.get("height", screen["height"]))
            return {
                "image": self.image,
                "width": width,
                "height": height,
                "stable": True,
                "timed_out": False,
                "waited_ms": 0,
                "polls": 1,
                "change_ratio_last": 0.0,
            }
        if action == "screens":
            return {"screens": self.screens}
        if action == "screenshot.cursor":
            return {"x": 0, "y": 0}
        if action == "clipboard.get":
            text = self.clipboard
            return {"text": text, "length": len(text), "truncated": False}
        if action == "clipboard.set":
            self.clipboard = str(params.get("text", ""))
        if action == "windows.list":
            return []
        return {"status": "ok"}


@asynccontextmanager
async def run_many(
    ws_url: str,
    credentials: Sequence[str],
    *,
    connect_concurrency: int = 50,
    **options: Any,
) -> AsyncIterator[list[SimulatedAgent]]:
    """Run one :class:`SimulatedAgent` per credential, all connected while the block runs.

    ``options`` go to every agent; at most ``connect_concurrency`` handshakes run at once.
    """
    agents = [SimulatedAgent(ws_url, credential, **options) for credential in credentials]
    gate = asyncio.Semaphore(connect_concurrency)

    async def start(agent: SimulatedAgent) -> None:
        async with gate:
            await agent.connect()

    try:
        async with asyncio.TaskGroup() as group:
            for agent in agents:
                group.create_task(start(agent))
        yield agents
    finally:
        async with asyncio.TaskGroup() as group:
            for agent in agents:
                group.create_task(agent.disconnect())


@dataclasses.dataclass(frozen=True, slots=True)
class Enrolled:
    """A device enrolled through the server's API, and its agent's credential."""

    device_id: str
    name: str
    credential: str
    ws_url: str


async def enroll(
    http: httpx.AsyncClient,
    n: int = 1,
    *,
    name_prefix: str = "sim",
    tags: Sequence[str] = (),
    concurrency: int = 8,
) -> list[Enrolled]:
    """Enroll ``n`` devices named ``{name_prefix}-{i:04d}`` with ``tags``, as an agent would:
    an enrollment token each (``http`` is a client of the server authenticated as an admin),
    traded for a credential at ``/v1/agent/register``."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Enrolled:
        name = f"{name_prefix}-{index:04d}"
        async with gate:
            created = await http.post(
                "/v1/devices/enrollment",
                json={"suggested_name": name, "suggested_tags": list(tags)},
            )
            created.raise_for_status()
            registered = await http.post(
                "/v1/agent/register",
                json={
                    "enrollment_token": created.json()["token"],
                    "hardware_id": f"sim-hw-{name}-{next(_serial)}",
                },
            )
            registered.raise_for_status()
        body = registered.json()
        return Enrolled(body["device_id"], name, body["auth_token"], body["ws_url"])

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i)) for i in range(n)]
    return [task.result() for task in tasks]
