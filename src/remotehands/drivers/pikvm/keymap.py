"""kvmd's names for keys and mouse buttons, and its absolute mouse range: the tables a PiKVM
client and a PiKVM-compatible server share.

:data:`WEB_KEYS` holds the 126 key names kvmd accepts (browser ``KeyboardEvent.code``,
case-sensitive), each with its evdev ``KEY_`` code (kvmd's binary frames may carry the code
instead of the name). They are also key codes of remotehands' vocabulary
(:data:`remotehands.protocol.keys.CODES`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EVDEV_TO_BUTTON",
    "EVDEV_TO_WEB",
    "HELD_KEYS",
    "MOUSE_BUTTONS",
    "MOVE_MAX",
    "MOVE_MIN",
    "WEB_KEYS",
    "clamp_delta",
    "clamp_move",
    "from_kvmd",
    "to_kvmd",
]


def _web_keys() -> dict[str, int]:
    keys: dict[str, int] = {}
    letters = "QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM"
    for row, first in zip(letters, (16, 30, 44), strict=True):
        keys.update({f"Key{c}": first + i for i, c in enumerate(row)})
    keys.update({f"Digit{d}": 2 + (d - 1) % 10 for d in range(10)})
    keys.update({f"F{n}": 58 + n for n in range(1, 11)})
    keys.update({"F11": 87, "F12": 88})
    keys.update({f"F{n}": 170 + n for n in range(13, 25)})  # KEY_F13 is 183
    keys.update(
        {
            "Enter": 28,
            "Escape": 1,
            "Backspace": 14,
            "Tab": 15,
            "Space": 57,
            "Minus": 12,
            "Equal": 13,
            "BracketLeft": 26,
            "BracketRight": 27,
            "Backslash": 43,
            "Semicolon": 39,
            "Quote": 40,
            "Backquote": 41,
            "Comma": 51,
            "Period": 52,
            "Slash": 53,
            "CapsLock": 58,
            "PrintScreen": 99,
            "Insert": 110,
            "Home": 102,
            "PageUp": 104,
            "Delete": 111,
            "End": 107,
            "PageDown": 109,
            "ArrowRight": 106,
            "ArrowLeft": 105,
            "ArrowDown": 108,
            "ArrowUp": 103,
            "ControlLeft": 29,
            "ShiftLeft": 42,
            "AltLeft": 56,
            "MetaLeft": 125,
            "ControlRight": 97,
            "ShiftRight": 54,
            "AltRight": 100,
            "MetaRight": 126,
            "Pause": 119,
            "ScrollLock": 70,
            "NumLock": 69,
            "ContextMenu": 438,
            "NumpadDivide": 98,
            "NumpadMultiply": 55,
            "NumpadSubtract": 74,
            "NumpadAdd": 78,
            "NumpadEnter": 96,
            "Numpad1": 79,
            "Numpad2": 80,
            "Numpad3": 81,
            "Numpad4": 75,
            "Numpad5": 76,
            "Numpad6": 77,
            "Numpad7": 71,
            "Numpad8": 72,
            "Numpad9": 73,
            "Numpad0": 82,
            "NumpadDecimal": 83,
            "Power": 116,
            "IntlBackslash": 86,
            "IntlYen": 124,
            "IntlRo": 89,
            "KanaMode": 90,
            "Convert": 92,
            "NonConvert": 94,
            "AudioVolumeMute": 113,
            "AudioVolumeUp": 115,
            "AudioVolumeDown": 114,
        }
    )
    return keys


WEB_KEYS: Final[dict[str, int]] = _web_keys()
"""kvmd's 126 key names (browser ``KeyboardEvent.code``, case-sensitive) -> evdev ``KEY_`` codes
(for the binary frames' raw form). The names are also the vocabulary's key codes."""
EVDEV_TO_WEB: Final[dict[int, str]] = {code: name for name, code in WEB_KEYS.items()}

HELD_KEYS: Final = frozenset(
    {
        "ControlLeft",
        "ControlRight",
        "ShiftLeft",
        "ShiftRight",
        "AltLeft",
        "AltRight",
        "MetaLeft",
        "MetaRight",
        "PrintScreen",
    }
)
"""The nine keys a press with ``finish`` leaves held."""

MOUSE_BUTTONS: Final[dict[str, int]] = {
    "left": 0x110,
    "right": 0x111,
    "middle": 0x112,
    "up": 0x116,
    "down": 0x115,
}
"""kvmd's mouse buttons -> evdev ``BTN_`` codes (``up``/``down`` are BTN_BACK/BTN_FORWARD)."""
EVDEV_TO_BUTTON: Final[dict[int, str]] = {code: name for name, code in MOUSE_BUTTONS.items()}


MOVE_MIN: Final = -32768
MOVE_MAX: Final = 32767


def clamp_move(value: int) -> int:
    """An absolute coordinate clamped to -32768..32767."""
    return min(max(value, MOVE_MIN), MOVE_MAX)


def clamp_delta(value: int) -> int:
    """A relative or wheel delta clamped to -127..127."""
    return min(max(value, -127), 127)


def to_kvmd(pixel: int, size: int) -> int:
    """A pixel of an axis of ``size`` pixels, as kvmd's web UI maps it."""
    if size <= 1:
        return 0
    return round(pixel * (MOVE_MAX - MOVE_MIN) / (size - 1) + MOVE_MIN)


def from_kvmd(value: int, size: int) -> int:
    """The pixel an absolute coordinate lands on, on an axis of ``size`` pixels."""
    if size <= 1:
        return 0
    return round((clamp_move(value) - MOVE_MIN) * (size - 1) / (MOVE_MAX - MOVE_MIN))
