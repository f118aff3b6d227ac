"""Streamed actions over the agent link: a transfer target for each row marked ``streamed``.

The server relays a streamed action (``media.upload``) as a chunked upload to the transfer
target named after the action's wire name; the transfer's name holds the action's other
parameters as a JSON object (``{"name": "debian.iso"}``) and its size is the payload's.
:class:`ActionTarget` opens a sink that runs the action through the device's
:class:`~remotehands.agent.dispatch.Dispatcher` (validation, capability check, action log) with
the transfer's bytes attached as its body, handing them over as they arrive: a write waits
until the driver took the previous bytes, so the link's credit, not this module, bounds what is
held. A cancelled or failed transfer cancels the action, and the driver drops what it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import orjson
from pydantic import BaseModel

from remotehands.agent.transfers import TransferTargets, UploadSink
from remotehands.errors import DeviceError, ValidationError
from remotehands.protocol.actions import ACTIONS, ActionSpec
from remotehands.protocol.params import Params, StreamedParams
from remotehands.protocol.results import to_wire
from remotehands.protocol.validation import validated

__all__ = ["ActionTarget", "Call", "register_streamed_actions"]

Call = Callable[[str, Params], Awaitable[BaseModel]]
"""Runs an action with its parameter model (:meth:`Dispatcher.call`)."""


Run = Coroutine[Any, Any, BaseModel]


class _ActionSink:
    """Feeds one transfer's bytes to a running action, one chunk at a time."""

    def __init__(self, run: Callable[[AsyncIterator[bytes]], Run]) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)  # None: the end
        self._task: asyncio.Task[BaseModel] = asyncio.create_task(run(self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            yield data

    async def _put(self, data: bytes | None) -> None:
        # The action may end (fail) while we wait for it to take the bytes: wait for either.
        put = asyncio.ensure_future(self._queue.put(data))
        try:
            await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        if not put.done() or put.cancelled():
            await self._task  # raises the action's error
            raise DeviceError("the action ended before it took all of the upload's bytes")

    async def write(self, data: bytes) -> None:
        if data:
            await self._put(data)

    async def finish(self) -> Any:
        await self._put(None)
        return to_wire(await self._task)

    async def abort(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class ActionTarget:
    """The transfer target of one streamed action (see the module docstring)."""

    def __init__(self, spec: ActionSpec, call: Call) -> None:
        self.spec = spec
        self._call = call

    async def open_sink(self, name: str, size: int) -> UploadSink:
        try:
            given = orjson.loads(name) if name else {}
        except orjson.JSONDecodeError as err:
            raise ValidationError(
                f"the transfer to {self.spec.name} names its parameters as a JSON object, not "
                f"{name[:80]!r}"
            ) from err
        if not isinstance(given, dict):
            raise ValidationError(f"the parameters of {self.spec.name} must be a JSON object")
        params = validated(self.spec.params, {**given, "size": size}, self.spec.name)
        if not isinstance(params, StreamedParams):
            raise ValidationError(f"{self.spec.name} is not a streamed action")

        async def run(chunks: AsyncIterator[bytes]) -> BaseModel:
            return await self._call(self.spec.name, params.with_body(chunks))

        return _ActionSink(run)

    async def open_source(self, name: str) -> Any:
        raise ValidationError(f"{self.spec.name} takes uploads only")


def register_streamed_actions(targets: TransferTargets, call: Call) -> None:
    """Register an :class:`ActionTarget` for every streamed action of the table."""
    for spec in ACTIONS:
        if spec.streamed:
            targets.register(spec.name, ActionTarget(spec, call))
