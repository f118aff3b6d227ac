"""The agent link: messages between an agent and the server over one WebSocket.

The agent dials ``/v1/agent/ws`` with ``Authorization: Bearer agt_...``. Every message is one
WebSocket frame:

- a **text** frame holds one JSON object with a ``type``;
- a **binary** frame holds a message that carries images: 4 bytes big-endian header length, the
  JSON header (a message like the text ones, where each ``bytes`` value was replaced by
  ``{"$blob": i, "len": n}``), then the blobs back to back. One reply is always one frame, so
  concurrent replies never interleave, and images never travel as base64.

Agent -> server: ``hello`` (first), ``heartbeat``, ``reply``.
Server -> agent: ``welcome`` (answer to hello), ``request``.

A request carries ``id``, ``action`` (a name of :data:`remotehands.protocol.actions.ACTIONS`),
``params`` and ``timeout_ms``; its reply carries the same ``id`` and either ``result`` or
``error`` (``{"error": code, "details": text}``).

Beside request/reply, the link carries streams:

- **Watching a screen.** The server sends ``watch`` (a ``stream`` id it chose, the ``screen``,
  the ``rate``, ``quality`` and ``format`` it wants); the agent pushes ``frame`` messages tagged
  with that stream id (binary: the image is a blob) while the screen changes, until ``unwatch``.
  A frame of a delta format (``jpeg-rect`` after the first, H.264 between key frames) carries
  ``key`` false, and a ``jpeg-rect`` frame the ``x``, ``y`` of its rectangle; the server asks
  for a key frame with ``keyframe`` (a consumer joined, or missed a frame). An agent that
  cannot go on (no such screen, the driver failed) sends ``stream_end`` with the error.
- **Chunked transfers**, paced by the receiver. The server opens one with ``transfer_open``
  (``direction`` ``upload``: server to agent, with its ``size``; ``download``: agent to server,
  with the ``window`` of bytes the server grants up front). The agent answers
  ``transfer_accept`` (an upload's first ``window`` of credit; a download's ``size``). Then the
  sender sends ``chunk`` messages (binary, at most :data:`~remotehands.protocol.streams.CHUNK_MAX`
  bytes each, ``offset`` in order) and never more bytes than the receiver granted; the receiver
  grants more with ``credit`` as it consumes them. An upload ends with the agent's
  ``transfer_done`` (the target's ``result``) once all ``size`` bytes arrived; a download ends
  with its last byte. Either side may send ``transfer_cancel`` (with an ``error``) at any time;
  the other side drops the transfer and reports the error. Messages for a stream or transfer
  that is gone are ignored: they cross a cancel on the wire.

When the link drops, every stream and transfer on it ends on both sides.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from remotehands.errors import ValidationError
from remotehands.protocol.models import Health, ScreenInfo

__all__ = [
    "CLOSE_CREDENTIAL_REFUSED",
    "CLOSE_FENCED",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "LINK_PATH",
    "STREAM_MESSAGES",
    "TRANSFER_MESSAGES",
    "Chunk",
    "Credit",
    "FrameMessage",
    "Heartbeat",
    "Hello",
    "Keyframe",
    "Reply",
    "Request",
    "StreamEnd",
    "TransferAccept",
    "TransferCancel",
    "TransferDone",
    "TransferOpen",
    "Unwatch",
    "Watch",
    "Welcome",
    "decode",
    "encode",
    "heartbeat_health",
    "restart_reason",
    "retry_after",
]

LINK_PATH = "/v1/agent/ws"

CLOSE_CREDENTIAL_REFUSED = 4001
"""The device credential is unknown or revoked (the device was deleted): do not retry with it."""
CLOSE_FENCED = 4002
"""A newer connection of the same device replaced this one."""
CLOSE_PROTOCOL_ERROR = 4003
"""The peer sent something that is not a valid link message."""

CLOSE_SERVICE_RESTART = 1012
"""WebSocket's "service restart" (RFC 6455 registry): what uvicorn sends on every socket it
closes as it stops, with no reason. An agent that gets it without a :func:`retry_after` comes
back after a jittered delay of its own."""

_RETRY_AFTER = re.compile(r"\bretry_after_ms=(\d{1,7})\b")


def restart_reason(retry_after_s: float) -> str:
    """The close reason of a server going away for a restart: when to come back."""
    return f"server restarting; retry_after_ms={max(0, round(retry_after_s * 1000))}"


def retry_after(reason: str | None) -> float | None:
    """Seconds a close reason made by :func:`restart_reason` asks to wait, else None."""
    found = _RETRY_AFTER.search(reason or "")
    return int(found.group(1)) / 1000 if found else None


_HEADER = struct.Struct(">I")
MAX_HEADER = 4 * 1024 * 1024


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Hello(_Msg):
    """First message of an agent: who it is and what it can do."""

    type: Literal["hello"] = "hello"
    device_id: str
    agent_version: str
    driver: str
    device_type: str
    capabilities: list[str]
    screens: list[ScreenInfo] = Field(default_factory=list)
    hardware_id: str
    health: Health | None = None

    @field_validator("capabilities")
    @classmethod
    def _current_names(cls, value: list[str]) -> list[str]:
        # agents of 0.1.0 called the mouse capability "pointer"
        return ["mouse" if c == "pointer" else c for c in value]


class Welcome(_Msg):
    """The server accepted the link."""

    type: Literal["welcome"] = "welcome"
    device_id: str
    heartbeat_interval_s: float


class Heartbeat(_Msg):
    """Periodic proof of life with the machine's health."""

    type: Literal["heartbeat"] = "heartbeat"
    health: Health


_PLAIN_HEALTH = frozenset(("uptime_seconds", "cpu_percent", "memory_percent"))


def heartbeat_health(message: dict[str, Any]) -> dict[str, Any]:
    """The health a decoded ``heartbeat`` message reports, exactly as
    ``Heartbeat.model_validate(message).health.model_dump()`` gives it.

    Ten thousand links send a thousand heartbeats a second, nearly all of the same plain shape
    (three numbers): those are read here without building models. Anything else (a ``device``
    condition, a field this version does not know, a value that is not a plain number, no
    health at all) goes through :class:`Heartbeat`, so that it is validated, and refused, as
    ever: raises :class:`pydantic.ValidationError` on a malformed heartbeat."""
    health = message.get("health")
    if type(health) is dict and health.keys() == _PLAIN_HEALTH:
        uptime = health["uptime_seconds"]
        cpu = health["cpu_percent"]
        memory = health["memory_percent"]
        # exact types: anything else (a bool, a numeric string) takes the model's way
        plain = (float, int)
        if type(uptime) in plain and type(cpu) in plain and type(memory) in plain:
            return {
                "uptime_seconds": float(uptime),
                "cpu_percent": float(cpu),
                "memory_percent": float(memory),
            }
    return Heartbeat.model_validate(message).health.model_dump()


class Request(_Msg):
    """An action for the agent to carry out."""

    type: Literal["request"] = "request"
    id: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_ms: int = 30_000


class Reply(_Msg):
    """The outcome of a request: ``result`` on success, ``error`` on failure."""

    type: Literal["reply"] = "reply"
    id: str
    result: Any = None
    error: dict[str, Any] | None = None


class Watch(_Msg):
    """Server -> agent: push frames of ``screen`` on ``stream`` while it changes."""

    type: Literal["watch"] = "watch"
    stream: int
    screen: int = 0
    rate: float = Field(default=30.0, gt=0, le=120)
    quality: int = Field(default=75, ge=1, le=100)
    format: Literal["jpeg", "jpeg-rect", "h264"] = "jpeg"
    """``jpeg``: every frame whole; ``jpeg-rect``: the first frame whole, then only the
    changed rectangle; ``h264``: H.264 (Annex B, constrained baseline), a key frame first."""


class Keyframe(_Msg):
    """Server -> agent: a consumer of ``stream`` needs a key frame (it joined late, missed a
    frame or its decoder failed): the agent sends one soon, even if the screen is still."""

    type: Literal["keyframe"] = "keyframe"
    stream: int


class Unwatch(_Msg):
    """Server -> agent: stop the frames of ``stream``."""

    type: Literal["unwatch"] = "unwatch"
    stream: int


class FrameMessage(_Msg):
    """Agent -> server: one frame of a watched stream (a binary message; ``data`` is a blob)."""

    type: Literal["frame"] = "frame"
    stream: int
    seq: int
    at: float
    width: int
    height: int
    format: str
    data: bytes
    x: int = 0
    y: int = 0
    key: bool = True


class StreamEnd(_Msg):
    """Agent -> server: the agent ended ``stream`` (``error`` says why)."""

    type: Literal["stream_end"] = "stream_end"
    stream: int
    error: dict[str, Any] | None = None


class TransferOpen(_Msg):
    """Server -> agent: start a transfer to (``upload``) or from (``download``) a target."""

    type: Literal["transfer_open"] = "transfer_open"
    transfer: str
    direction: Literal["upload", "download"]
    target: str
    name: str
    size: int | None = Field(default=None, ge=0)
    """An upload's size in bytes."""
    window: int = Field(default=0, ge=0)
    """A download's first credit: the bytes the agent may send before it hears more."""


class TransferAccept(_Msg):
    """Agent -> server: the target took the transfer."""

    type: Literal["transfer_accept"] = "transfer_accept"
    transfer: str
    window: int = Field(default=0, ge=0)
    """An upload's first credit."""
    size: int | None = Field(default=None, ge=0)
    """A download's size in bytes."""


class Credit(_Msg):
    """Receiver -> sender: ``bytes`` more may be sent."""

    type: Literal["credit"] = "credit"
    transfer: str
    bytes: int = Field(gt=0)


class Chunk(_Msg):
    """Sender -> receiver: the next bytes of a transfer (a binary message)."""

    type: Literal["chunk"] = "chunk"
    transfer: str
    offset: int = Field(ge=0)
    data: bytes


class TransferDone(_Msg):
    """Agent -> server: an upload arrived whole; ``result`` is what its target answered."""

    type: Literal["transfer_done"] = "transfer_done"
    transfer: str
    result: Any = None


class TransferCancel(_Msg):
    """Either way: the transfer is over, unfinished; ``error`` says why."""

    type: Literal["transfer_cancel"] = "transfer_cancel"
    transfer: str
    error: dict[str, Any] = Field(
        default_factory=lambda: {"error": "device_error", "details": "transfer cancelled"}
    )


STREAM_MESSAGES = frozenset({"watch", "unwatch", "keyframe", "frame", "stream_end"})
"""The message types of screen streams."""
TRANSFER_MESSAGES = frozenset(
    {"transfer_open", "transfer_accept", "credit", "chunk", "transfer_done", "transfer_cancel"}
)
"""The message types of chunked transfers."""


def _strip_blobs(value: Any, blobs: list[bytes]) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        blobs.append(bytes(value))
        return {"$blob": len(blobs) - 1, "len": len(value)}
    if isinstance(value, dict):
        return {k: _strip_blobs(v, blobs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip_blobs(v, blobs) for v in value]
    return value


def _restore_blobs(value: Any, blobs: list[bytes]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$blob", "len"} and isinstance(value["$blob"], int):
            index = value["$blob"]
            if not 0 <= index < len(blobs):
                raise ValidationError(f"link message names blob {index} but carries {len(blobs)}")
            return blobs[index]
        return {k: _restore_blobs(v, blobs) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_blobs(v, blobs) for v in value]
    return value


def encode(message: BaseModel | dict[str, Any]) -> str | bytes:
    """One frame for ``message``: text JSON, or a binary frame when it holds ``bytes`` values."""
    data = message.model_dump(mode="python") if isinstance(message, BaseModel) else message
    try:
        # orjson refuses bytes: a message without any is a text frame at once, without the
        # walk that looks for them (the walk costs more than the JSON on small messages)
        return orjson.dumps(data).decode()
    except TypeError:
        pass
    blobs: list[bytes] = []
    stripped = _strip_blobs(data, blobs)
    header = orjson.dumps(stripped)
    if not blobs:
        return header.decode()
    return b"".join([_HEADER.pack(len(header)), header, *blobs])


def decode(frame: str | bytes) -> dict[str, Any]:
    """Parse one frame into a message dict with its ``bytes`` values restored.

    Raises :class:`ValidationError` on anything malformed, so a peer sending garbage can be
    disconnected cleanly.
    """
    try:
        if isinstance(frame, str):
            data = orjson.loads(frame)
            blobs: list[bytes] = []
        else:
            if len(frame) < _HEADER.size:
                raise ValidationError("binary link frame shorter than its header")
            (size,) = _HEADER.unpack_from(frame)
            if size > MAX_HEADER or _HEADER.size + size > len(frame):
                raise ValidationError("binary link frame with a bad header length")
            data = orjson.loads(frame[_HEADER.size : _HEADER.size + size])
            payload = memoryview(frame)[_HEADER.size + size :]
            blobs, offset = [], 0
            for ref in _blob_refs(data):
                blobs.append(bytes(payload[offset : offset + ref]))
                offset += ref
            if offset != len(payload):
                raise ValidationError("binary link frame whose blobs do not add up")
    except orjson.JSONDecodeError as err:
        raise ValidationError(f"link frame is not JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValidationError("link message without a type")
    if not blobs:
        # a text frame carries no blob: nothing to restore (a marker in it stays plain data)
        return data
    restored: dict[str, Any] = _restore_blobs(data, blobs)
    return restored


def _blob_refs(value: Any) -> list[int]:
    """Blob lengths in index order, from the ``{"$blob", "len"}`` markers of a header."""
    found: dict[int, int] = {}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if set(v) == {"$blob", "len"} and isinstance(v["$blob"], int):
                if not isinstance(v["len"], int) or v["len"] < 0:
                    raise ValidationError("binary link frame with a bad blob length")
                found[v["$blob"]] = v["len"]
                return
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    if sorted(found) != list(range(len(found))):
        raise ValidationError("binary link frame with missing blob indexes")
    return [found[i] for i in range(len(found))]
