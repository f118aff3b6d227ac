"""What both ends of the Openctrol protocol share: key casing, the OFRA frame header and the
Windows virtual-key codes.

**Casing.** The Openctrol agent is ASP.NET Core: it reads request bodies case-insensitively
(``HaId``, ``haId`` and ``ha_id``'s ASP.NET spelling ``Ha_Id`` all bind), its DTOs go out in
camelCase, its ``/health`` and WebSocket messages in snake_case, and its clients (the Home
Assistant integration, its test script) send PascalCase. :func:`fold` maps every one of these
spellings of a name to one key (``haid``), so :class:`Folded` reads ``ha_id``, ``haId`` and
``HaId`` alike, in bodies the face receives and in answers the driver reads.

**OFRA.** A frame on ``/ws/desktop`` is a binary message: a 16-byte header, ASCII ``OFRA``
then three little-endian int32 (width, height, format; ``1`` is JPEG), then the image.

**Virtual keys.** Keys travel as Windows virtual-key codes (``VK_*``). :data:`VK_BY_CODE` maps
the W3C ``KeyboardEvent.code`` names of :mod:`remotehands.protocol.keys` to them, and
:data:`CODE_BY_VK` back (the generic ``VK_SHIFT``/``VK_CONTROL``/``VK_MENU`` read as the left
key).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

from remotehands.errors import ValidationError

__all__ = [
    "CODE_BY_VK",
    "FORMAT_JPEG",
    "HEADER",
    "MAGIC",
    "VK_BY_CODE",
    "Folded",
    "fold",
    "ofra_header",
    "parse_ofra",
]

MAGIC = b"OFRA"
HEADER = struct.Struct("<4siii")
"""The 16-byte frame header: magic, width, height, format (little-endian int32s)."""
FORMAT_JPEG = 1


def fold(name: str) -> str:
    """The case- and underscore-free form of a key: ``ha_id``, ``haId``, ``HaId`` -> ``haid``."""
    return name.replace("_", "").replace("-", "").lower()


class Folded(Mapping[str, Any]):
    """A JSON object read by folded keys: ``body["ha_id"]`` finds ``HaId`` as well.

    Nested objects and lists of objects come out folded too. When two keys fold alike, the
    last one wins, as ASP.NET's binder does.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = {fold(str(key)): value for key, value in data.items()}
        self.keys_as_sent = tuple(str(key) for key in data)
        """The keys as the sender spelled them."""

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[fold(key)])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and fold(key) in self._data


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Folded(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


def ofra_header(width: int, height: int, fmt: int = FORMAT_JPEG) -> bytes:
    """The 16-byte header of a frame."""
    return HEADER.pack(MAGIC, width, height, fmt)


def parse_ofra(message: bytes) -> tuple[int, int, int, bytes]:
    """``(width, height, format, payload)`` of a binary frame message; :class:`ValidationError`
    when it is not an OFRA frame."""
    if len(message) < HEADER.size:
        raise ValidationError(f"a frame of {len(message)} bytes is shorter than its header")
    magic, width, height, fmt = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise ValidationError(f"not an OFRA frame: it starts with {magic!r}")
    return width, height, fmt, message[HEADER.size :]


def _vk_table() -> dict[str, int]:
    table: dict[str, int] = {}
    table.update({f"Key{chr(c)}": c for c in range(ord("A"), ord("Z") + 1)})
    table.update({f"Digit{d}": 0x30 + d for d in range(10)})
    table.update({f"F{n}": 0x6F + n for n in range(1, 25)})
    table.update({f"Numpad{d}": 0x60 + d for d in range(10)})
    table.update(
        {
            "Backspace": 0x08,
            "Tab": 0x09,
            "Enter": 0x0D,
            "Pause": 0x13,
            "CapsLock": 0x14,
            "Escape": 0x1B,
            "Space": 0x20,
            "PageUp": 0x21,
            "PageDown": 0x22,
            "End": 0x23,
            "Home": 0x24,
            "ArrowLeft": 0x25,
            "ArrowUp": 0x26,
            "ArrowRight": 0x27,
            "ArrowDown": 0x28,
            "PrintScreen": 0x2C,
            "Insert": 0x2D,
            "Delete": 0x2E,
            "MetaLeft": 0x5B,
            "MetaRight": 0x5C,
            "ContextMenu": 0x5D,
            "NumpadMultiply": 0x6A,
            "NumpadAdd": 0x6B,
            "NumpadSubtract": 0x6D,
            "NumpadDecimal": 0x6E,
            "NumpadDivide": 0x6F,
            "NumLock": 0x90,
            "ScrollLock": 0x91,
            "ShiftLeft": 0xA0,
            "ShiftRight": 0xA1,
            "ControlLeft": 0xA2,
            "ControlRight": 0xA3,
            "AltLeft": 0xA4,
            "AltRight": 0xA5,
            "AudioVolumeMute": 0xAD,
            "AudioVolumeDown": 0xAE,
            "AudioVolumeUp": 0xAF,
            "MediaTrackNext": 0xB0,
            "MediaTrackPrevious": 0xB1,
            "MediaStop": 0xB2,
            "MediaPlayPause": 0xB3,
            "Semicolon": 0xBA,
            "Equal": 0xBB,
            "Comma": 0xBC,
            "Minus": 0xBD,
            "Period": 0xBE,
            "Slash": 0xBF,
            "Backquote": 0xC0,
            "BracketLeft": 0xDB,
            "Backslash": 0xDC,
            "BracketRight": 0xDD,
            "Quote": 0xDE,
            "IntlBackslash": 0xE2,
        }
    )
    return table


VK_BY_CODE: dict[str, int] = _vk_table()
"""W3C key code -> Windows virtual-key code. ``NumpadEnter`` shares ``VK_RETURN`` with
``Enter`` (Windows tells them apart by a flag the protocol does not carry), and ``Power`` has
no virtual key."""
VK_BY_CODE["NumpadEnter"] = 0x0D

CODE_BY_VK: dict[int, str] = {
    **{vk: code for code, vk in VK_BY_CODE.items() if code != "NumpadEnter"},
    0x10: "ShiftLeft",  # VK_SHIFT
    0x11: "ControlLeft",  # VK_CONTROL
    0x12: "AltLeft",  # VK_MENU
}
"""Windows virtual-key code -> W3C key code."""
