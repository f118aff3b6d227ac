"""Chunked transfers on the server's side of one agent link.

:meth:`LinkTransfers.upload` sends bytes to one of the agent's transfer targets, never more
than the agent granted (:class:`~remotehands.protocol.streams.SendWindow`), and returns the
target's answer. :meth:`LinkTransfers.download` receives bytes from a target, granting credit
as its caller consumes them (:class:`~remotehands.protocol.streams.ReceiveWindow`), so neither
end ever holds more than a window. Cancelling the caller cancels the transfer on the agent; a
cancel or failure on the agent fails the caller with the agent's error; the link's end fails
them all with :class:`~remotehands.errors.DeviceOfflineError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from remotehands.errors import (
    DeviceOfflineError,
    DeviceTimeoutError,
    RemoteHandsError,
    ValidationError,
    error_from_wire,
)
from remotehands.protocol.link import (
    Chunk,
    Credit,
    TransferAccept,
    TransferCancel,
    TransferDone,
    TransferOpen,
    encode,
)
from remotehands.protocol.streams import (
    CHUNK_MAX,
    DEFAULT_CHUNK,
    DEFAULT_WINDOW,
    ReceiveWindow,
    SendWindow,
)

__all__ = ["TRANSFER_TIMEOUT_S", "Download", "LinkTransfers"]

logger = logging.getLogger(__name__)

TRANSFER_TIMEOUT_S = 60.0
"""The longest a transfer may wait for the agent at a stretch (an answer, credit, a chunk)."""

Send = Callable[[str | bytes], Awaitable[None]]


@dataclass(eq=False)
class _Pending:
    id: str
    accepted: asyncio.Future[TransferAccept]
    done: asyncio.Future[Any] | None = None
    send_window: SendWindow | None = None
    receive: ReceiveWindow | None = None
    inbox: asyncio.Queue[bytes | RemoteHandsError] = field(default_factory=asyncio.Queue)
    failed: bool = False

    def fail(self, error: RemoteHandsError) -> None:
        for future in (self.accepted, self.done):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved here: a caller that left must not log it
        if self.send_window is not None:
            self.send_window.fail(error)
        self.inbox.put_nowait(error)


class Download:
    """An incoming download: its :attr:`size`, and its bytes with ``async for``."""

    def __init__(self, transfers: LinkTransfers, pending: _Pending, size: int) -> None:
        self.size = size
        self.received = 0
        self._transfers = transfers
        self._pending = pending

    @property
    def peak_held(self) -> int:
        """The most bytes that were ever received here and not yet read by the caller."""
        return self._pending.receive.peak if self._pending.receive is not None else 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        pending = self._pending
        window = pending.receive
        assert window is not None  # set before a Download is made
        while self.received < self.size:
            try:
                async with asyncio.timeout(TRANSFER_TIMEOUT_S):
                    item = await pending.inbox.get()
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"download {pending.id} got nothing for {TRANSFER_TIMEOUT_S:g} s"
                ) from err
            if isinstance(item, RemoteHandsError):
                raise item
            self.received += len(item)
            yield item
            grant = window.consumed(len(item))
            if grant and self.received < self.size:
                await self._transfers.send(encode(Credit(transfer=pending.id, bytes=grant)))
        self._transfers.finish(pending.id)


class LinkTransfers:
    """The transfers of one agent link; :meth:`handle` takes their messages."""

    def __init__(
        self,
        device_id: str,
        send: Send,
        *,
        window: int = DEFAULT_WINDOW,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.device_id = device_id
        self.send = send
        self.window = window
        self.chunk = min(chunk, CHUNK_MAX)
        self._ids = itertools.count(1)
        self._active: dict[str, _Pending] = {}
        self._closed: RemoteHandsError | None = None
        self.last_upload: SendWindow | None = None
        """The flow control of the latest upload (to check it never exceeded its credit)."""

    @property
    def active(self) -> list[str]:
        """The ids of the transfers under way."""
        return list(self._active)

    def _open(self) -> _Pending:
        if self._closed is not None:
            raise self._closed
        transfer_id = f"t{next(self._ids)}"
        pending = _Pending(transfer_id, asyncio.get_running_loop().create_future())
        self._active[transfer_id] = pending
        return pending

    def finish(self, transfer_id: str) -> None:
        """Forget a transfer that ended well."""
        self._active.pop(transfer_id, None)

    async def _cancel(self, pending: _Pending, error: RemoteHandsError) -> None:
        if self._active.pop(pending.id, None) is None:
            return
        with contextlib.suppress(RemoteHandsError):
            await self.send(encode(TransferCancel(transfer=pending.id, error=error.to_wire())))

    async def _accepted(self, pending: _Pending) -> TransferAccept:
        try:
            async with asyncio.timeout(TRANSFER_TIMEOUT_S):
                return await pending.accepted
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"device {self.device_id} did not take transfer {pending.id} within "
                f"{TRANSFER_TIMEOUT_S:g} s"
            ) from err

    async def upload(self, target: str, name: str, chunks: AsyncIterable[bytes], size: int) -> Any:
        """Send ``size`` bytes from ``chunks`` to the agent's ``target`` as ``name``; returns
        the target's answer. See :meth:`remotehands.server.router.DeviceRouter.upload`."""
        if size < 0:
            raise ValidationError(f"an upload's size cannot be negative ({size})")
        pending = self._open()
        pending.done = asyncio.get_running_loop().create_future()
        window = pending.send_window = self.last_upload = SendWindow()
        try:
            await self.send(encode(TransferOpen(transfer=pending.id, direction="upload",
                                                target=target, name=name, size=size)))  # fmt: skip
            accept = await self._accepted(pending)
            if accept.window:
                window.grant(accept.window)
            offset = 0
            async for data in chunks:
                for start in range(0, len(data), self.chunk):
                    piece = data[start : start + self.chunk]
                    if offset + len(piece) > size:
                        raise ValidationError(
                            f"the upload's chunks hold more than the {size} bytes announced"
                        )
                    try:
                        await window.spend(len(piece), TRANSFER_TIMEOUT_S)
                    except TimeoutError as err:
                        raise DeviceTimeoutError(
                            f"device {self.device_id} granted no credit for transfer "
                            f"{pending.id} in {TRANSFER_TIMEOUT_S:g} s"
                        ) from err
                    await self.send(encode({"type": "chunk", "transfer": pending.id,
                                            "offset": offset, "data": piece}))  # fmt: skip
                    offset += len(piece)
            if offset != size:
                raise ValidationError(
                    f"the upload's chunks hold {offset} bytes, not the {size} announced"
                )
            try:
                async with asyncio.timeout(TRANSFER_TIMEOUT_S):
                    return await pending.done
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"device {self.device_id} did not confirm transfer {pending.id}"
                ) from err
        except BaseException as err:
            await self._abandon(pending, err)
            raise
        finally:
            self._active.pop(pending.id, None)

    @contextlib.asynccontextmanager
    async def download(self, target: str, name: str) -> AsyncIterator[Download]:
        """Bytes of ``name`` from the agent's ``target`` for the block; leaving the block
        early cancels the transfer. See :meth:`remotehands.server.router.DeviceRouter.download`."""
        pending = self._open()
        receive = pending.receive = ReceiveWindow(self.window)
        try:
            await self.send(encode(TransferOpen(transfer=pending.id, direction="download",
                                                target=target, name=name,
                                                window=receive.initial())))  # fmt: skip
            accept = await self._accepted(pending)
            download = Download(self, pending, accept.size or 0)
            yield download
            if download.received < download.size:
                await self._cancel(pending, ValidationError("the server stopped the download"))
        except BaseException as err:
            await self._abandon(pending, err)
            raise
        finally:
            self._active.pop(pending.id, None)

    async def _abandon(self, pending: _Pending, err: BaseException) -> None:
        """Cancel ``pending`` on both sides because ``err`` ended it here (a cancelled caller,
        a failed source, a timeout), even while the caller's task is being cancelled."""
        reason = (
            err
            if isinstance(err, RemoteHandsError)
            else ValidationError("the server cancelled the transfer")
        )
        await asyncio.shield(self._cancel(pending, reason))

    def handle(self, message: dict[str, Any]) -> None:
        """A transfer message from the agent (never waits)."""
        kind = message["type"]
        if kind == "transfer_accept":
            accept = TransferAccept.model_validate(message)
            pending = self._active.get(accept.transfer)
            if pending is not None and not pending.accepted.done():
                pending.accepted.set_result(accept)
        elif kind == "credit":
            credit = Credit.model_validate(message)
            pending = self._active.get(credit.transfer)
            if pending is not None and pending.send_window is not None:
                pending.send_window.grant(credit.bytes)
        elif kind == "chunk":
            chunk = Chunk.model_validate(message)
            pending = self._active.get(chunk.transfer)
            if pending is None or pending.receive is None or pending.failed:
                return  # crossed a cancel on the wire
            try:
                pending.receive.receive(len(chunk.data), chunk.offset)
            except ValidationError as err:
                # The agent broke the protocol: the caller gets the error and, leaving, tells
                # the agent (the transfer stays listed until then, so that it can).
                pending.failed = True
                pending.fail(ValidationError(f"transfer {chunk.transfer}: {err.details}"))
                return
            pending.inbox.put_nowait(chunk.data)
        elif kind == "transfer_done":
            done = TransferDone.model_validate(message)
            pending = self._active.get(done.transfer)
            if pending is not None and pending.done is not None and not pending.done.done():
                pending.done.set_result(done.result)
        elif kind == "transfer_cancel":
            cancel = TransferCancel.model_validate(message)
            pending = self._active.pop(cancel.transfer, None)
            if pending is not None:
                pending.fail(
                    error_from_wire(
                        str(cancel.error.get("error", "device_error")),
                        str(cancel.error.get("details", "the agent cancelled the transfer")),
                    )
                )
        else:
            raise ValidationError(f"unexpected transfer message {kind!r} from an agent")

    def close(self, error: RemoteHandsError | None = None) -> None:
        """The link is gone: fail every transfer under way."""
        self._closed = error or DeviceOfflineError(f"device {self.device_id} went offline")
        active, self._active = self._active, {}
        for pending in active.values():
            pending.fail(self._closed)
