"""The agent's side of the link to a fleet server.

``enroll`` trades a single-use enrollment token for a device credential, which is kept in a state
file (mode 0600) so the agent enrolls once. :class:`AgentLink` then dials the server's WebSocket,
says hello, sends heartbeats with real health, carries out requests through the dispatcher and
answers them (images as binary frames), and reconnects with capped exponential backoff and full
jitter when the link drops. A credential the server refuses (the device was deleted) stops it.

Coming back is fast and gentle: a server that stops gracefully tells each agent when to come
back (``retry_after_ms`` in its close reason, spread by the server; a bare "service restart"
close, 1012, gets a delay drawn from :data:`RESTART_COME_BACK_S`), and for a while after losing
a server that had welcomed it (:data:`QUICK_WINDOW_S`) an agent retries within
:data:`QUICK_CAP_S` rather than backing off to half a minute: a restarted server has its agents
back within seconds, and a server that stays down is tried less and less often. A server
admitting too many agents at once answers ``503`` with ``Retry-After`` (to the link's upgrade
and to a registration): the agent comes back when it said (:func:`busy_retry_after`), which is
not a failure.

Beside requests it serves the link's streams: a ``watch`` subscribes to the screen's
:class:`~remotehands.agent.framesource.FrameSource` and pushes its frames, tagged with the
stream id, until ``unwatch``; chunked transfers run through
:class:`~remotehands.agent.transfers.LinkTransfers` into the device's transfer targets. The end
of a session ends its streams and transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pydantic
import websockets
from websockets.asyncio.client import ClientConnection, connect

from remotehands import __version__
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.framesource import FrameSources, FrameStream, encoder_for
from remotehands.agent.streamed import register_streamed_actions
from remotehands.agent.transfers import LinkTransfers, TransferTargets
from remotehands.errors import (
    AuthError,
    ConfigError,
    DeviceTimeoutError,
    NotFoundError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
    error_from_wire,
)
from remotehands.private import write_private
from remotehands.protocol import link as wire
from remotehands.protocol.models import DeviceCondition, Health
from remotehands.protocol.streams import KeyGate
from remotehands.tls import pinned_context

__all__ = [
    "AgentLink",
    "Credential",
    "busy_retry_after",
    "enroll",
    "hardware_id",
    "health",
    "load_or_enroll",
    "stop_if_cancelled",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credential:
    """What enrollment gives a device: its id, its secret and where to connect."""

    server_url: str
    device_id: str
    auth_token: str
    ws_url: str


def hardware_id(suffix: str = "") -> str:
    """A stable id of this machine (and of the device on it, via ``suffix``)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            base = Path(path).read_text().strip()
            if base:
                break
    else:
        base = socket.gethostname()
    return hashlib.sha256(f"{base}{suffix}".encode()).hexdigest()[:32]


_BOOT = psutil.boot_time()


def health() -> Health:
    """Uptime, CPU and memory of this machine right now."""
    return Health(
        uptime_seconds=round(time.time() - _BOOT, 1),
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=psutil.virtual_memory().percent,
    )


async def enroll(
    server_url: str,
    token: str,
    *,
    hardware: str,
    device_type: str,
    name: str | None = None,
    tags: Sequence[str] = (),
    timeout_s: float = 15.0,
    pin: str | None = None,
    busy_wait_s: float = 600.0,
) -> Credential:
    """Register this device with an ``ekvent_`` token; the token is used up. ``tags`` are
    added to the token's own. With ``pin`` (``sha256:HEX``) the server must show that
    certificate before the token is sent. A server that answers ``503`` with ``Retry-After``
    (too many agents at once) is asked again when it said, for up to ``busy_wait_s``."""
    body: dict[str, Any] = {"enrollment_token": token, "hardware_id": hardware,
                            "device_type": device_type}  # fmt: skip
    if name:
        body["name"] = name
    if tags:
        body["tags"] = list(tags)
    url = server_url.rstrip("/") + "/v1/agent/register"
    deadline = time.monotonic() + busy_wait_s
    try:
        verify = await _server_context(server_url, pin)
        async with httpx.AsyncClient(timeout=timeout_s, verify=verify) as client:
            while True:
                response = await client.post(url, json=body)
                wait = busy_retry_after(response.status_code, response.headers.get("Retry-After"))
                if wait is None or time.monotonic() + wait > deadline:
                    break
                # the server admits registrations at the pace its database takes: not a failure
                log.info("the server is busy enrolling others; trying again in %.1f s", wait)
                await asyncio.sleep(wait)
    except (httpx.HTTPError, OSError, TimeoutError) as err:
        raise ConfigError(f"cannot reach the server at {server_url} to enroll: {err}") from err
    data = _json(response)
    if response.status_code != 200:
        raise error_from_wire(str(data.get("error", "unauthorized")),
                              str(data.get("details", response.text)))  # fmt: skip
    try:
        return Credential(server_url=server_url, device_id=data["device_id"],
                          auth_token=data["auth_token"], ws_url=data["ws_url"])  # fmt: skip
    except KeyError as err:
        raise ValidationError(f"the server's registration answer lacks {err}") from err


async def _server_context(url: str, pin: str | None) -> ssl.SSLContext | bool:
    """The TLS context to reach ``url`` with: pinned to ``pin`` when given (the server's own
    certificate, self-signed or not), else the system's CAs."""
    if pin is None:
        return True
    parsed = httpx.URL(url)
    if parsed.scheme not in ("https", "wss"):
        raise ConfigError(
            f"--server-fingerprint pins a TLS certificate, but {url} is not https://: use the "
            "server's https:// address"
        )
    return await pinned_context(parsed.host, parsed.port or 443, pin)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _state_file(state_dir: Path, server_url: str, hardware: str) -> Path:
    key = hashlib.sha256(f"{server_url.rstrip('/')}|{hardware}".encode()).hexdigest()[:16]
    return state_dir / f"credential-{key}.json"


async def load_or_enroll(
    server_url: str,
    token: str | None,
    *,
    state_dir: Path,
    hardware: str,
    device_type: str,
    name: str | None = None,
    tags: Sequence[str] = (),
    pin: str | None = None,
) -> Credential:
    """The stored credential for this server and device, or a new one from ``token`` (with
    ``tags`` added to the token's; a stored credential keeps the device's tags as they are);
    ``pin`` is the server's certificate fingerprint, checked before the token is sent."""
    path = _state_file(state_dir, server_url, hardware)
    stored = await asyncio.to_thread(_read_credential, path)
    if stored is not None:
        return stored
    if not token:
        raise ConfigError(
            f"this agent is not enrolled with {server_url} yet: create an enrollment token on "
            "the server (remotehands enroll, or POST /v1/devices/enrollment) and pass it with "
            "--token ekvent_..."
        )
    credential = await enroll(
        server_url, token, hardware=hardware, device_type=device_type, name=name, tags=tags,
        pin=pin,
    )  # fmt: skip
    await asyncio.to_thread(_write_credential, path, credential)
    return credential


def _read_credential(path: Path) -> Credential | None:
    if not path.exists():
        return None
    try:
        return Credential(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(
            f"the credential file {path} is damaged ({err}); remove it and enroll again with a "
            "new token"
        ) from err


def _write_credential(path: Path, credential: Credential) -> None:
    """Write atomically, readable by the owner only (in a 0700 directory): the file holds the
    device's secret."""
    write_private(path, json.dumps(asdict(credential)).encode())


def _check_refused(close_code: int | None) -> None:
    """Raise :class:`AuthError` when the server closed the link refusing the credential."""
    if close_code == wire.CLOSE_CREDENTIAL_REFUSED:
        raise AuthError("the server refused this device's credential: the device was deleted or "
                        "its credential revoked; enroll again")  # fmt: skip


def busy_retry_after(status: int, header: str | None) -> float | None:
    """How long to wait before trying again after a ``503`` (or ``429``) answer with
    ``Retry-After`` (seconds): at least what the server asked, plus up to half of it again
    (capped at :data:`QUICK_CAP_S`) so that a crowd told the same comes back spread out; None
    for any other answer."""
    if status not in (429, 503) or header is None:
        return None
    try:
        asked = float(header)
    except ValueError:
        return None  # an HTTP date: not what our server sends; the backoff applies
    asked = min(max(asked, 0.0), 300.0)
    return asked + random.uniform(0, min(asked / 2, QUICK_CAP_S))


QUICK_WINDOW_S = 60.0
"""How long after losing a server that had welcomed it an agent keeps retrying quickly."""
QUICK_CAP_S = 2.0
"""The longest wait between two attempts during :data:`QUICK_WINDOW_S` (full jitter below)."""
RESTART_COME_BACK_S = (0.5, 3.0)
"""The range of the delay drawn after a "service restart" close without a ``retry_after_ms``:
the server stopped without saying when, and a fleet that drew from it comes back spread over
a few seconds."""
RELEASE_TIMEOUT_S = 5.0
"""How long releasing held input may take when a link ends."""
FRAME_SEND_TIMEOUT_S = 10.0
"""The longest one frame may wait for the link; a server that does not read is gone."""


class AgentLink:
    """One device's connection to the server, kept up until :meth:`run` is cancelled.

    ``frames`` are the device's frame sources (the dispatcher's when not given, so that the
    input it runs makes them capture at once; share them with the faces that stream the
    screen); ``targets`` its transfer targets (when
    not given: the probe, and one for each streamed action such as ``media.upload``);
    ``condition`` says whether the device itself can serve (sent with the hello and every
    heartbeat as ``health.device``).
    """

    def __init__(
        self,
        credential: Credential,
        dispatcher: Dispatcher,
        *,
        driver_name: str,
        device_type: str,
        hardware: str,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        frames: FrameSources | None = None,
        targets: TransferTargets | None = None,
        condition: Callable[[], DeviceCondition | None] | None = None,
        pin: str | None = None,
    ) -> None:
        self.credential = credential
        self.condition = condition
        self.pin = pin
        """The server's certificate fingerprint (``sha256:HEX``): no other server is linked."""
        self.dispatcher = dispatcher
        self.driver_name = driver_name
        self.device_type = device_type
        self.hardware = hardware
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.connected = asyncio.Event()
        self.connections = 0
        self.frames = frames if frames is not None else dispatcher.frame_sources
        if targets is None:
            targets = TransferTargets()
            register_streamed_actions(targets, dispatcher.call)
        self.targets = targets
        self.transfers: LinkTransfers | None = None
        """The transfers of the current session (None between sessions)."""
        self.watches: dict[int, asyncio.Task[None]] = {}
        """The watched streams of the current session, by stream id."""
        self._watch_frames: dict[int, FrameStream] = {}
        """Their subscriptions to the frame source, for key frame requests."""
        self.last_close: tuple[int | None, str | None] | None = None
        """The close code and reason that ended the last session (1006 and no reason when the
        connection broke without a close frame); None before the first."""
        self.heartbeat_interval_s: float | None = None
        """The heartbeat interval the server asked for in its last welcome."""
        self._come_back_s: float | None = None
        """When the server that closed the last session asked to be tried again."""
        self._ws: ClientConnection | None = None

    async def rehello(self) -> None:
        """End the current session, so that the next one says hello again: the device's
        capabilities and screens changed (its driver came up after the link)."""
        if self._ws is not None:
            await self._ws.close()

    async def _health(self) -> Health:
        machine = await asyncio.to_thread(health)
        if self.condition is None:
            return machine
        return machine.model_copy(update={"device": self.condition()})

    async def run(self) -> None:
        """Connect, serve, reconnect; returns only when the server refuses the credential."""
        attempt = 0
        quick_until = 0.0
        while True:
            before = self.connections
            try:
                await self._session()
            except (AuthError, ConfigError):  # a refused credential or pin: retrying is futile
                raise
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError,
                    RemoteHandsError) as err:  # fmt: skip
                log.warning("link to %s lost: %s", self.credential.ws_url, err)
            finally:
                self.connected.clear()
                self._ws = None
            stop_if_cancelled()
            if self.connections > before:
                attempt = 0  # the server welcomed us: the next outage starts a new backoff
                quick_until = time.monotonic() + QUICK_WINDOW_S
            cap = self.backoff_cap_s
            if time.monotonic() < quick_until:
                cap = min(cap, QUICK_CAP_S)
            delay = random.uniform(0, min(cap, self.backoff_base_s * 2**attempt))
            if self._come_back_s is not None:  # the server said when: its spread is the jitter
                delay, self._come_back_s = self._come_back_s, None
            attempt = min(attempt + 1, 20)
            await asyncio.sleep(delay)

    async def _hello(self) -> wire.Hello:
        screens = []
        if self.dispatcher.driver.has("screen"):
            try:
                screens = (await self.dispatcher.run("screens"))["screens"]
            except RemoteHandsError as err:
                # a KVM that is down has no screen to list yet: its health says why
                log.warning("device %s lists no screens: %s", self.credential.device_id,
                            err.details)  # fmt: skip
        return wire.Hello(
            device_id=self.credential.device_id,
            agent_version=__version__,
            driver=self.driver_name,
            device_type=self.device_type,
            capabilities=self.dispatcher.capabilities,
            screens=screens,
            hardware_id=self.hardware,
            health=await self._health(),
        )

    async def _session(self) -> None:
        headers = {"Authorization": f"Bearer {self.credential.auth_token}"}
        tls: dict[str, Any] = {}
        if self.pin is not None:
            # checked before the handshake that carries the credential
            tls["ssl"] = await _server_context(self.credential.ws_url, self.pin)
        try:
            ws = await connect(self.credential.ws_url, additional_headers=headers,
                               compression=None, max_size=None, open_timeout=10,
                               ping_interval=None, **tls)  # fmt: skip
        except websockets.exceptions.InvalidStatus as err:
            status = err.response.status_code
            if status in (401, 403):
                raise AuthError(
                    f"the server refused this device's credential ({status}): enroll again"
                ) from err
            wait = busy_retry_after(status, err.response.headers.get("Retry-After"))
            if wait is not None:  # admission is full: come back when the server said
                self.last_close = (None, f"{status} Retry-After {wait:g}")
                self._come_back_s = wait
            raise
        async with ws:
            self._ws = ws
            try:
                # a server that refuses the credential may close before the hello is out
                await ws.send(wire.encode(await self._hello()))
                async with asyncio.timeout(10):
                    welcome = wire.Welcome.model_validate(wire.decode(await ws.recv()))
            except websockets.exceptions.ConnectionClosed:
                _check_refused(ws.close_code)
                self._note_come_back(ws)
                raise
            self.heartbeat_interval_s = welcome.heartbeat_interval_s
            self.connections += 1
            self.connected.set()
            log.info("linked to %s as %s", self.credential.ws_url, welcome.device_id)
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._heartbeats(ws, welcome.heartbeat_interval_s))
                    await self._serve(ws, tasks)
                    raise _LinkClosed
            except* _LinkClosed:
                pass
            except* (websockets.exceptions.ConnectionClosed, OSError, TimeoutError) as lost:
                # a heartbeat or a reply sent as the server went away: the link is lost, the
                # agent comes back (an ExceptionGroup here would stop it for good)
                log.warning("link to %s lost: %s", self.credential.ws_url, lost.exceptions[0])
            finally:
                await self._let_go()
            code = ws.close_code
            _check_refused(code)
            self._note_come_back(ws)
            if code == wire.CLOSE_FENCED:
                log.warning("another connection of this device replaced this one")

    def _note_come_back(self, ws: ClientConnection) -> None:
        """Remember when the server that closed ``ws`` asked to be tried again: the delay in
        its close reason, or one of our own drawing for a bare "service restart"."""
        self.last_close = (ws.close_code, ws.close_reason)
        self._come_back_s = wire.retry_after(ws.close_reason)
        if self._come_back_s is None and ws.close_code == wire.CLOSE_SERVICE_RESTART:
            self._come_back_s = random.uniform(*RESTART_COME_BACK_S)

    async def _let_go(self) -> None:
        """Release the keys and buttons held for the server: nobody is left to release them
        once the link is gone."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                held = await self.dispatcher.release_input()
        except (RemoteHandsError, TimeoutError) as err:
            log.warning("could not release held input after the link ended: %s", err)
            return
        if held:
            log.info("link ended: released %s", ", ".join(sorted(held.keys | held.buttons)))

    async def _heartbeats(self, ws: ClientConnection, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            beat = wire.Heartbeat(health=await self._health())
            await ws.send(wire.encode(beat))

    async def _serve(self, ws: ClientConnection, tasks: asyncio.TaskGroup) -> None:
        self.transfers = LinkTransfers(self.targets, ws.send, tasks)
        try:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                async for frame in ws:
                    try:
                        message = wire.decode(frame)
                        kind = message["type"]
                        if kind == "request":
                            request = wire.Request.model_validate(message)
                            tasks.create_task(self._answer(ws, request))
                        elif kind in wire.TRANSFER_MESSAGES:
                            self.transfers.handle(message)
                        elif kind == "watch":
                            self._watch(ws, tasks, wire.Watch.model_validate(message))
                        elif kind == "keyframe":
                            stream = self._watch_frames.get(
                                wire.Keyframe.model_validate(message).stream
                            )
                            if stream is not None:
                                stream.request_key()
                        elif kind == "unwatch":
                            task = self.watches.pop(wire.Unwatch.model_validate(message).stream,
                                                    None)  # fmt: skip
                            if task is not None:
                                task.cancel()
                    except (ValidationError, pydantic.ValidationError) as err:
                        log.warning("ignoring a malformed frame from the server: %s", err)
        finally:
            for task in self.watches.values():
                task.cancel()
            self.watches.clear()
            self._watch_frames.clear()
            self.transfers = None

    def _watch(self, ws: ClientConnection, tasks: asyncio.TaskGroup, watch: wire.Watch) -> None:
        old = self.watches.pop(watch.stream, None)
        if old is not None:
            old.cancel()
        self.watches[watch.stream] = tasks.create_task(self._push_frames(ws, watch))

    async def _push_frames(self, ws: ClientConnection, watch: wire.Watch) -> None:
        """Send the frames of one watched stream until it is unwatched or the link goes."""
        error: dict[str, Any] | None = None
        try:
            if self.frames is None:
                raise UnsupportedError("this device has no screen to watch")
            screens = {screen["id"] for screen in (await self.dispatcher.run("screens"))["screens"]}
            if watch.screen not in screens:
                raise NotFoundError(f"no screen {watch.screen}: this device has {sorted(screens)}")
            source = self.frames.get(watch.screen)
            encoder = encoder_for(watch.format, watch.quality, rate=watch.rate)
            # A delta format's frame is useless without the one before it: a deeper queue
            # drops fewer, and the gate skips to the next key frame after a drop.
            depth = 2 if watch.format == "jpeg" else 4
            gate = KeyGate()
            async with source.subscribe(rate=watch.rate, encoder=encoder, depth=depth) as frames:
                self._watch_frames[watch.stream] = frames
                try:
                    async for frame in frames:
                        admit, ask = gate.admit(frame, time.monotonic())
                        if ask:
                            frames.request_key()
                        if not admit:
                            continue
                        message = wire.encode({
                            "type": "frame", "stream": watch.stream, "seq": frame.seq,
                            "at": frame.captured_at, "width": frame.width, "height": frame.height,
                            "format": frame.format, "data": frame.data, "x": frame.x, "y": frame.y,
                            "key": frame.key,
                        })  # fmt: skip
                        async with asyncio.timeout(FRAME_SEND_TIMEOUT_S):
                            await ws.send(message)
                finally:
                    if self._watch_frames.get(watch.stream) is frames:
                        del self._watch_frames[watch.stream]
        except RemoteHandsError as err:
            error = err.to_wire()
        except TimeoutError:
            return  # the server stopped reading: the link is as good as gone
        except websockets.exceptions.ConnectionClosed:
            return
        if self.watches.get(watch.stream) is asyncio.current_task():
            del self.watches[watch.stream]
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await ws.send(wire.encode(wire.StreamEnd(stream=watch.stream, error=error)))

    async def _answer(self, ws: ClientConnection, request: wire.Request) -> None:
        # The reply as the dict wire.Reply dumps to: building the model to dump it again costs
        # more than the rest of the reply.
        reply: dict[str, Any]
        try:
            async with asyncio.timeout(request.timeout_ms / 1000):
                result = await self.dispatcher.run(request.action, request.params)
            reply = {"type": "reply", "id": request.id, "result": result, "error": None}
        except TimeoutError:
            err = DeviceTimeoutError(f"{request.action} took longer than {request.timeout_ms} ms")
            reply = {"type": "reply", "id": request.id, "result": None, "error": err.to_wire()}
        except RemoteHandsError as err:
            reply = {"type": "reply", "id": request.id, "result": None, "error": err.to_wire()}
        except Exception as err:  # the link must survive any driver bug
            log.exception("action %s failed unexpectedly", request.action)
            failure = {"error": "device_error", "details": f"agent failure: {err}"}
            reply = {"type": "reply", "id": request.id, "result": None, "error": failure}
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await ws.send(wire.encode(reply))


def stop_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task was asked to stop and the
    request was lost on the way. Python 3.11's TaskGroup drops a cancellation that arrives
    while it is cancelling its tasks for an error of its own. That happens when the link closes
    just as SIGTERM comes, and the agent would then link again instead of stopping."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _LinkClosed(Exception):
    """The server closed the link; ends the session's task group."""
