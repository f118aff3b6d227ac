"""What replicas say to each other on NATS: subjects, and messages packed as the agent link
packs its frames (JSON, with ``bytes`` values carried raw after it: images never in base64).

Every subject starts with :data:`PREFIX`. A message that does not parse raises
:class:`~remotehands.errors.ValidationError` from :func:`unpack`; the receivers drop and log it.
"""

from __future__ import annotations

from typing import Any

from remotehands.errors import RemoteHandsError, ValidationError, error_from_wire
from remotehands.protocol.link import decode, encode

__all__ = [
    "PREFIX",
    "device_subject",
    "error_of",
    "pack",
    "pack_error",
    "replica_subject",
    "unpack",
]

PREFIX = "rh"
"""The first token of every subject remotehands uses."""


def device_subject(device_id: str, operation: str) -> str:
    """The subject the replica holding ``device_id``'s link answers ``operation`` on
    (``rh.dev.<id>.req``, ``.watch``, ``.upload``, ``.download``)."""
    return f"{PREFIX}.dev.{device_id}.{operation}"


def replica_subject(replica: str, operation: str) -> str:
    """The subject replica ``replica`` answers ``operation`` on (``rh.replica.<name>.bulk``: a
    bulk action on devices it holds)."""
    return f"{PREFIX}.replica.{replica}.{operation}"


def pack(message: dict[str, Any]) -> bytes:
    """``message`` as bytes: JSON, or the link's binary form when it holds ``bytes`` values
    (a ``type`` is added when missing: the link's form requires one)."""
    frame = encode(message if "type" in message else {"type": "cluster", **message})
    return frame.encode() if isinstance(frame, str) else frame


def unpack(data: bytes) -> dict[str, Any]:
    """The message packed by :func:`pack`; raises :class:`ValidationError` for anything else."""
    if not data:
        raise ValidationError("empty cluster message")
    try:
        message = decode(data.decode() if data[:1] == b"{" else data)
    except UnicodeDecodeError as err:
        raise ValidationError(f"cluster message is not UTF-8 JSON: {err}") from err
    if not isinstance(message, dict):
        raise ValidationError("cluster message is not an object")
    return message


def pack_error(error: RemoteHandsError) -> bytes:
    """A reply carrying ``error`` by its wire code."""
    return pack({"error": error.to_wire()})


def error_of(message: dict[str, Any]) -> RemoteHandsError | None:
    """The error a reply carries (rebuilt from its wire code), or None."""
    error = message.get("error")
    if error is None:
        return None
    if not isinstance(error, dict):
        return error_from_wire("device_error", f"a replica sent a malformed error: {error!r}")
    return error_from_wire(
        str(error.get("error", "device_error")),
        str(error.get("details", "another replica reported an error without details")),
    )
