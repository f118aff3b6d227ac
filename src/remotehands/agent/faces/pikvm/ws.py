"""kvmd's event socket, ``/api/ws``: states pushed to the client, HID events from it.

On connect the client gets ``loop`` (the kvmd version) first, then the full state of every
subsystem (``gpio``, ``hid``, ``atx``, ``msd``, ``streamer``, ``ocr``, ``switch``, one ``info``
event per submanager), ``hid_keymaps``, and ``clients`` (broadcast to every socket, as kvmd
does; the sockets already open get the full states again too, kvmd's trigger on a connect).
While it is open, the states are polled once a second and only what changed is sent:
``hid`` and ``atx`` whole, the others as partial events that the client deep-merges into the
last full state (dicts merged recursively, everything else replaced); ``info`` ``uptime`` and
``health`` every five seconds.

From the client: JSON ``{"event_type", "event"}`` frames (``ping``, ``key``, ``mouse_button``,
``mouse_move``, ``mouse_relative``, ``mouse_wheel``) and the binary frames of kvmd's web UI
(op byte 0 ping, 1 key, 2 mouse button, 3 absolute move, 4 relative, 5 wheel; answered ping:
``0xFF``). Bad input is dropped without a reply; an empty binary frame closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from remotehands.agent.faces.pikvm.hid import (
    EVDEV_TO_BUTTON,
    EVDEV_TO_WEB,
    MOUSE_BUTTONS,
    WEB_KEYS,
    Hid,
    clamp_move,
    quietly,
)
from remotehands.agent.faces.pikvm.info import KVMD_VERSION
from remotehands.agent.faces.pikvm.wire import check_in, valid_bool, valid_number

__all__ = ["POLL_S", "Socket", "diff"]

log = logging.getLogger(__name__)

POLL_S: Final = 1.0
"""How often a socket's states are polled for changes."""
INFO_EVERY: Final = 5
"""Polls between two ``info`` ``uptime``/``health`` events."""
WHOLE: Final = frozenset({"hid", "atx", "ocr"})
"""Events always sent whole; the others are sent as the part that changed."""

States = Callable[[], Awaitable[dict[str, Any]]]


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What of ``new`` differs from ``old``, such that deep-merging it into ``old`` gives
    ``new``: dicts recursively, everything else whole."""
    changed: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = diff(before, value)
            if inner:
                changed[key] = inner
        elif before != value:
            changed[key] = value
    return changed


_MISSING: Final = object()


class Socket:
    """One client of ``/api/ws``."""

    def __init__(self, websocket: WebSocket, hid: Hid, stream: bool) -> None:
        self.websocket = websocket
        self.hid = hid
        self.stream = stream
        self._send_lock = asyncio.Lock()
        self.sent: dict[str, dict[str, Any]] = {}

    async def send(self, event_type: str, event: Any) -> None:
        """One event, as kvmd writes it (compact JSON)."""
        text = json.dumps({"event_type": event_type, "event": event})
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def send_state(self, event_type: str, state: dict[str, Any]) -> None:
        """A subsystem's state: whole the first time (and always for :data:`WHOLE`), then
        only what changed, and nothing when nothing did."""
        last = self.sent.get(event_type)
        self.sent[event_type] = state
        if last is None:
            await self.send(event_type, state)
            return
        part = diff(last, state)
        if part:
            await self.send(event_type, state if event_type in WHOLE else part)

    async def send_full(self, events: list[tuple[str, Any]], states: Mapping[str, States]) -> None:
        """``events`` whole, as the states every later change is diffed against (kvmd sends
        every client the full states again when another one connects)."""
        for event_type, event in events:
            if event_type in states:
                self.sent[event_type] = event
            await self.send(event_type, event)

    async def _pong(self) -> None:
        async with self._send_lock:
            await self.websocket.send_bytes(b"\xff")

    async def poll(self, states: Mapping[str, States], info: Callable[[str], Any]) -> None:
        """Push the changes of ``states`` every :data:`POLL_S` until cancelled."""
        ticks = 0
        while True:
            await asyncio.sleep(POLL_S)
            ticks += 1
            for event_type, read in states.items():
                try:
                    await self.send_state(event_type, await read())
                except Exception as err:  # noqa: BLE001 -- a state that cannot be read now is tried next tick
                    log.debug("pikvm face: %s state unreadable: %s", event_type, err)
            if ticks % INFO_EVERY == 0:
                for name in ("uptime", "health"):
                    await self.send("info", {name: info(name)})

    async def receive(self) -> None:
        """Handle the client's frames until it leaves or sends an empty binary frame."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await self._text(message["text"])
            elif message.get("bytes"):
                await self._binary(message["bytes"])
            else:
                return

    async def _text(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        event_type, event = frame.get("event_type"), frame.get("event")
        if not isinstance(event_type, str) or not isinstance(event, dict):
            return
        if event_type == "ping":
            await self.send("pong", {})
            return
        handler = _JSON_EVENTS.get(event_type)
        if handler is not None:
            await quietly(event_type, handler(self.hid, event))

    async def _binary(self, data: bytes) -> None:
        op, payload = data[0], data[1:]
        if op == 0:
            await self._pong()
            return
        handler = _BINARY_EVENTS.get(op)
        if handler is not None:
            await quietly(f"binary op {op}", handler(self.hid, payload))


# -- JSON events ------------------------------------------------------------------------------


def _key_name(value: Any) -> str:
    return check_in(value, "Keyboard key", WEB_KEYS, lower=False)


def _deltas(event: Mapping[str, Any]) -> tuple[list[tuple[int, int]], bool]:
    raw = event["delta"]
    items = raw if isinstance(raw, list) else [raw]
    deltas = [
        (
            int(valid_number(d["x"], name="Mouse delta", limit=8)),
            int(valid_number(d["y"], name="Mouse delta", limit=8)),
        )
        for d in items
    ]
    return deltas, valid_bool(event.get("squash", False))


async def _json_key(hid: Hid, event: Mapping[str, Any]) -> None:
    name = _key_name(event["key"])
    state = valid_bool(event["state"])
    await hid.key(name, state, valid_bool(event.get("finish", False)))


async def _json_button(hid: Hid, event: Mapping[str, Any]) -> None:
    name = check_in(event["button"], "Mouse button", MOUSE_BUTTONS)
    await hid.mouse_button(name, valid_bool(event["state"]))


async def _json_move(hid: Hid, event: Mapping[str, Any]) -> None:
    to = event["to"]
    x = clamp_move(int(valid_number(to["x"], name="Mouse move", limit=8)))
    y = clamp_move(int(valid_number(to["y"], name="Mouse move", limit=8)))
    await hid.move(x, y)


async def _json_relative(hid: Hid, event: Mapping[str, Any]) -> None:
    await hid.relative(*_deltas(event))


async def _json_wheel(hid: Hid, event: Mapping[str, Any]) -> None:
    await hid.wheel(*_deltas(event))


_JSON_EVENTS: Final[dict[str, Callable[[Hid, Mapping[str, Any]], Awaitable[None]]]] = {
    "key": _json_key,
    "mouse_button": _json_button,
    "mouse_move": _json_move,
    "mouse_relative": _json_relative,
    "mouse_wheel": _json_wheel,
}

# -- binary frames ----------------------------------------------------------------------------


async def _bin_key(hid: Hid, data: bytes) -> None:
    flags = data[0]
    if flags & 0x80:
        (code,) = struct.unpack(">H", data[1:])
        name = EVDEV_TO_WEB[code]
    else:
        name = _key_name(data[1:33].decode("ascii"))
    await hid.key(name, bool(flags & 0x01), bool(flags & 0x02))


async def _bin_button(hid: Hid, data: bytes) -> None:
    flags = data[0]
    if flags & 0x80:
        (code,) = struct.unpack(">H", data[1:])
        name = EVDEV_TO_BUTTON[code]
    else:
        name = check_in(data[1:33].decode("ascii"), "Mouse button", MOUSE_BUTTONS)
    await hid.mouse_button(name, bool(flags & 0x01))


async def _bin_move(hid: Hid, data: bytes) -> None:
    x, y = struct.unpack(">hh", data)
    await hid.move(x, y)


def _bin_deltas(data: bytes) -> tuple[list[tuple[int, int]], bool]:
    squash, pairs = bool(data[0] & 0x01), data[1:]
    deltas = [struct.unpack(">bb", pairs[i : i + 2]) for i in range(0, len(pairs), 2)]
    return [(int(x), int(y)) for x, y in deltas], squash


async def _bin_relative(hid: Hid, data: bytes) -> None:
    await hid.relative(*_bin_deltas(data))


async def _bin_wheel(hid: Hid, data: bytes) -> None:
    await hid.wheel(*_bin_deltas(data))


_BINARY_EVENTS: Final[dict[int, Callable[[Hid, bytes], Awaitable[None]]]] = {
    1: _bin_key,
    2: _bin_button,
    3: _bin_move,
    4: _bin_relative,
    5: _bin_wheel,
}


async def serve(
    socket: Socket,
    *,
    initial: list[tuple[str, Any]],
    states: Mapping[str, States],
    info: Callable[[str], Any],
    joined: Callable[[], Awaitable[None]],
) -> None:
    """Run one accepted socket: ``loop``, the full states, then polling and receiving."""
    await socket.send("loop", {"version": {"major": KVMD_VERSION[0], "minor": KVMD_VERSION[1]}})
    for event_type, event in initial:
        if event_type in states:
            await socket.send_state(event_type, event)
        else:
            await socket.send(event_type, event)
    await joined()
    poller = asyncio.create_task(socket.poll(states, info), name="pikvm ws poll")
    try:
        with contextlib.suppress(WebSocketDisconnect):
            await socket.receive()
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await poller
