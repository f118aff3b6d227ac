"""Chunked transfers on the agent's side of the link, and the targets they land in.

A transfer reaches a **target** by name: an upload opens a sink on it (:meth:`TransferTarget.
open_sink`, with the file's name and size), a download opens a source (:meth:`TransferTarget.
open_source`). Capabilities register their targets in the device's :class:`TransferTargets`
(virtual media will register one that writes image files). Every agent has the ``probe``
target (:class:`ProbeTarget`): its sink keeps nothing but the size and SHA-256 of what it got
(and checks them when the name is ``sha256:<hex>``); its source sends a repeatable pattern. It
measures and checks the link without touching a disk.

:class:`LinkTransfers` runs the transfers of one link session: the receiver's credit
(:class:`~remotehands.protocol.streams.ReceiveWindow`) on uploads, the sender's
(:class:`~remotehands.protocol.streams.SendWindow`) on downloads, so no more than a window of
bytes is ever held; a cancel from the server aborts the sink or closes the source; a failing
target cancels the transfer towards the server with its error; the link's end ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from remotehands.errors import (
    DeviceError,
    DeviceTimeoutError,
    NotFoundError,
    RemoteHandsError,
    ValidationError,
)
from remotehands.protocol import link as wire
from remotehands.protocol.streams import (
    CHUNK_MAX,
    DEFAULT_CHUNK,
    DEFAULT_WINDOW,
    ReceiveWindow,
    SendWindow,
)

__all__ = [
    "PROBE",
    "DownloadSource",
    "LinkTransfers",
    "ProbeTarget",
    "TransferTarget",
    "TransferTargets",
    "UploadSink",
    "probe_pattern",
]

log = logging.getLogger(__name__)

PROBE = "probe"
"""The name of the target every agent has."""
CREDIT_TIMEOUT_S = 60.0
"""The longest a download waits for the server to grant more bytes."""
TARGET_TIMEOUT_S = 60.0
"""The longest one operation of a target (open, write, read, finish) may take."""


class UploadSink(Protocol):
    """Where the bytes of one upload go, in order."""

    async def write(self, data: bytes) -> None:
        """Take the next bytes."""
        ...

    async def finish(self) -> Any:
        """All bytes arrived: commit them; the JSON-able answer goes back to the server."""
        ...

    async def abort(self) -> None:
        """The upload failed or was cancelled: drop what was written; never raises."""
        ...


class DownloadSource(Protocol):
    """Where the bytes of one download come from."""

    @property
    def size(self) -> int:
        """How many bytes it will give."""
        ...

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` next bytes; ``b""`` only at the end."""
        ...

    async def close(self) -> None:
        """Release the source; never raises."""
        ...


class TransferTarget(Protocol):
    """A place transfers reach by name."""

    async def open_sink(self, name: str, size: int) -> UploadSink:
        """A sink for an upload of ``size`` bytes called ``name``."""
        ...

    async def open_source(self, name: str) -> DownloadSource:
        """A source for a download of ``name``."""
        ...


class TransferTargets:
    """The targets of one device, by name; :data:`PROBE` is always there."""

    def __init__(self) -> None:
        self._targets: dict[str, TransferTarget] = {PROBE: ProbeTarget()}

    def register(self, name: str, target: TransferTarget) -> None:
        """Make ``target`` reachable as ``name`` (replacing any other of that name)."""
        self._targets[name] = target

    def get(self, name: str) -> TransferTarget:
        """The target called ``name``; :class:`NotFoundError` names those that exist."""
        target = self._targets.get(name)
        if target is None:
            raise NotFoundError(
                f"no transfer target {name!r} on this device; it has: {', '.join(self.names)}"
            )
        return target

    @property
    def names(self) -> list[str]:
        """The registered target names, sorted."""
        return sorted(self._targets)


# -- the probe target ---------------------------------------------------------------------------

_PATTERN_BLOCK = 1 << 20
_SHA256_NAME = re.compile(r"sha256:([0-9a-f]{64})")


def probe_pattern(name: str) -> bytes:
    """The 1 MiB block the probe source repeats for a download called ``name``."""
    return random.Random(name).randbytes(_PATTERN_BLOCK)


@dataclass
class _ProbeSink:
    expected: str | None
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        # hashlib releases the GIL on large buffers: hashing off the loop keeps it free.
        await asyncio.to_thread(self.digest.update, data)

    async def finish(self) -> Any:
        got = self.digest.hexdigest()
        if self.expected is not None and got != self.expected:
            raise ValidationError(
                f"the upload's SHA-256 is {got}, not the {self.expected} its name promised"
            )
        return {"size": self.size, "sha256": got}

    async def abort(self) -> None:
        return None


@dataclass
class _ProbeSource:
    size: int
    block: bytes
    offset: int = 0

    async def read(self, max_bytes: int) -> bytes:
        n = min(max_bytes, self.size - self.offset)
        if n <= 0:
            return b""
        start = self.offset % len(self.block)
        if start + n <= len(self.block):
            data = self.block[start : start + n]
        else:
            data = (self.block[start:] + self.block)[:n]
        self.offset += n
        return data

    async def close(self) -> None:
        return None


class ProbeTarget:
    """Checks and measures the link: see the module docstring.

    Upload names ``sha256:<64 hex digits>`` are checked against the bytes received; any other
    name is not. A download's name is ``<size in bytes>`` or ``<size>:<seed>``; its bytes are
    :func:`probe_pattern` of the whole name, repeated.
    """

    async def open_sink(self, name: str, size: int) -> UploadSink:
        match = _SHA256_NAME.fullmatch(name)
        return _ProbeSink(match.group(1) if match else None)

    async def open_source(self, name: str) -> DownloadSource:
        size_text = name.partition(":")[0]
        if not size_text.isdigit():
            raise ValidationError(
                f"a probe download is named '<size in bytes>' or '<size>:<seed>', not {name!r}"
            )
        return _ProbeSource(int(size_text), probe_pattern(name))


# -- the transfers of one link session ----------------------------------------------------------

Send = Callable[[str | bytes], Awaitable[None]]


@dataclass(eq=False)
class _Transfer:
    id: str
    task: asyncio.Task[None] | None = None
    inbox: asyncio.Queue[bytes] | None = None
    receive: ReceiveWindow | None = None
    send_window: SendWindow | None = None


class LinkTransfers:
    """The transfers of one link session; :meth:`handle` takes their messages.

    ``send`` writes one message to the server. Tasks run in ``tasks`` (the session's task
    group), so the link's end cancels them.
    """

    def __init__(
        self,
        targets: TransferTargets,
        send: Send,
        tasks: asyncio.TaskGroup,
        *,
        window: int = DEFAULT_WINDOW,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.targets = targets
        self._send = send
        self._tasks = tasks
        self.window = window
        self.chunk = min(chunk, CHUNK_MAX)
        self._active: dict[str, _Transfer] = {}
        self.peak_held = 0
        """The most upload bytes ever received and not yet written to their sink."""

    @property
    def active(self) -> list[str]:
        """The ids of the transfers under way."""
        return list(self._active)

    def handle(self, message: dict[str, Any]) -> None:
        """One transfer message from the server (never waits)."""
        kind = message["type"]
        if kind == "transfer_open":
            opened = wire.TransferOpen.model_validate(message)
            if opened.transfer in self._active:
                raise ValidationError(f"transfer {opened.transfer} is already open")
            transfer = _Transfer(opened.transfer)
            self._active[opened.transfer] = transfer
            run = self._upload if opened.direction == "upload" else self._download
            transfer.task = self._tasks.create_task(run(transfer, opened))
        elif kind == "chunk":
            chunk = wire.Chunk.model_validate(message)
            found = self._active.get(chunk.transfer)
            if found is None or found.inbox is None or found.receive is None:
                return  # crossed a cancel on the wire
            try:
                found.receive.receive(len(chunk.data), chunk.offset)
            except ValidationError as err:
                self._fail(found, ValidationError(f"transfer {chunk.transfer}: {err.details}"))
                return
            self.peak_held = max(self.peak_held, found.receive.held)
            found.inbox.put_nowait(chunk.data)
        elif kind == "credit":
            credit = wire.Credit.model_validate(message)
            found = self._active.get(credit.transfer)
            if found is not None and found.send_window is not None:
                found.send_window.grant(credit.bytes)
        elif kind == "transfer_cancel":
            cancel = wire.TransferCancel.model_validate(message)
            found = self._active.pop(cancel.transfer, None)
            if found is not None and found.task is not None:
                log.info("transfer %s cancelled by the server: %s", cancel.transfer,
                         cancel.error.get("details"))  # fmt: skip
                found.task.cancel()
        else:
            raise ValidationError(f"unexpected transfer message {kind!r} from the server")

    def cancel(self, transfer_id: str, reason: str = "cancelled on the agent") -> bool:
        """Cancel a transfer from this side: the server's caller gets a ``device_error``."""
        found = self._active.get(transfer_id)
        if found is None:
            return False
        self._fail(found, DeviceError(f"the agent cancelled transfer {transfer_id}: {reason}"))
        return True

    def _fail(self, transfer: _Transfer, error: RemoteHandsError) -> None:
        """End ``transfer`` here and tell the server why."""
        if self._active.pop(transfer.id, None) is None:
            return
        if transfer.task is not None and transfer.task is not asyncio.current_task():
            transfer.task.cancel()
        self._tasks.create_task(self._send_cancel(transfer.id, error))

    async def _send_cancel(self, transfer_id: str, error: RemoteHandsError) -> None:
        message = wire.TransferCancel(transfer=transfer_id, error=error.to_wire())
        with contextlib.suppress(Exception):  # a link gone meanwhile ends the transfer anyway
            await self._send(wire.encode(message))

    async def _upload(self, transfer: _Transfer, opened: wire.TransferOpen) -> None:
        size = opened.size or 0
        sink: UploadSink | None = None
        done = False
        try:
            async with asyncio.timeout(TARGET_TIMEOUT_S):
                sink = await self.targets.get(opened.target).open_sink(opened.name, size)
            transfer.receive = ReceiveWindow(self.window)
            transfer.inbox = asyncio.Queue()
            accept = wire.TransferAccept(transfer=transfer.id, window=transfer.receive.initial())
            await self._send(wire.encode(accept))
            received = 0
            while received < size:
                # The server owes us bytes it has credit for; a pause this long is a dead peer.
                async with asyncio.timeout(CREDIT_TIMEOUT_S):
                    data = await transfer.inbox.get()
                if received + len(data) > size:
                    raise ValidationError(
                        f"transfer {transfer.id}: more than the {size} bytes announced"
                    )
                async with asyncio.timeout(TARGET_TIMEOUT_S):
                    await sink.write(data)
                received += len(data)
                grant = transfer.receive.consumed(len(data))
                if grant and received < size:
                    await self._send(wire.encode(wire.Credit(transfer=transfer.id, bytes=grant)))
            async with asyncio.timeout(TARGET_TIMEOUT_S):
                result = await sink.finish()
            done = True
            if self._active.pop(transfer.id, None) is not None:
                await self._send(wire.encode(wire.TransferDone(transfer=transfer.id,
                                                               result=result)))  # fmt: skip
        except Exception as err:  # noqa: BLE001 - a target's bug must end this transfer only
            self._fail(transfer, _transfer_error(err, "upload", transfer.id, opened.target))
        finally:
            self._active.pop(transfer.id, None)
            if sink is not None and not done:
                with contextlib.suppress(Exception):
                    await sink.abort()

    async def _download(self, transfer: _Transfer, opened: wire.TransferOpen) -> None:
        source: DownloadSource | None = None
        try:
            async with asyncio.timeout(TARGET_TIMEOUT_S):
                source = await self.targets.get(opened.target).open_source(opened.name)
            window = transfer.send_window = SendWindow()
            if opened.window:
                window.grant(opened.window)
            size = source.size
            accept = wire.TransferAccept(transfer=transfer.id, size=size)
            await self._send(wire.encode(accept))
            offset = 0
            while offset < size:
                async with asyncio.timeout(TARGET_TIMEOUT_S):
                    data = await source.read(min(self.chunk, size - offset))
                if not data:
                    raise DeviceError(
                        f"the {opened.target} source ended at {offset} of its {size} bytes"
                    )
                await window.spend(len(data), CREDIT_TIMEOUT_S)
                frame = wire.encode({"type": "chunk", "transfer": transfer.id, "offset": offset,
                                     "data": data})  # fmt: skip
                await self._send(frame)
                offset += len(data)
            self._active.pop(transfer.id, None)
        except Exception as err:  # noqa: BLE001 - a target's bug must end this transfer only
            self._fail(transfer, _transfer_error(err, "download", transfer.id, opened.target))
        finally:
            self._active.pop(transfer.id, None)
            if source is not None:
                with contextlib.suppress(Exception):
                    await source.close()


def _transfer_error(err: Exception, what: str, transfer_id: str, target: str) -> RemoteHandsError:
    """What ended a transfer, as the error both sides see: a stall is a timeout, our own errors
    stay as they are, and anything else is a bug of the target (logged), ending this transfer
    only."""
    if isinstance(err, TimeoutError):
        return DeviceTimeoutError(f"{what} {transfer_id} stalled")
    if isinstance(err, RemoteHandsError):
        return err
    log.error("%s %s failed", what, transfer_id, exc_info=err)
    return DeviceError(f"the {target} target failed: {err}")
