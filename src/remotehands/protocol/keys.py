"""Key names: W3C ``KeyboardEvent.code`` names plus friendly aliases.

A key is either a physical key named by its code (``KeyA``, ``ControlLeft``, ``Enter``) or a
character to produce (``{"char": "é"}``). Names are matched case-insensitively; aliases such as
``ctrl``, ``enter``, ``pgdn`` and single characters such as ``s`` or ``5`` map onto codes.
Combinations are written ``ctrl+shift+t`` or as lists ``["ctrl", {"char": "s"}]``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from remotehands.errors import ValidationError

__all__ = ["CODES", "MAX_CHORD", "Key", "parse_combo", "parse_key", "parse_keys"]


def _build_codes() -> tuple[str, ...]:
    codes: list[str] = []
    codes += [f"Key{c}" for c in string.ascii_uppercase]
    codes += [f"Digit{d}" for d in range(10)]
    codes += [f"F{n}" for n in range(1, 25)]
    codes += [f"Numpad{d}" for d in range(10)]
    codes += [
        "Enter", "Escape", "Backspace", "Tab", "Space", "Minus", "Equal", "BracketLeft",
        "BracketRight", "Backslash", "Semicolon", "Quote", "Backquote", "Comma", "Period",
        "Slash", "CapsLock", "PrintScreen", "ScrollLock", "Pause", "Insert", "Home", "PageUp",
        "Delete", "End", "PageDown", "ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp",
        "NumLock", "NumpadDivide", "NumpadMultiply", "NumpadSubtract", "NumpadAdd",
        "NumpadEnter", "NumpadDecimal", "IntlBackslash", "ContextMenu", "ControlLeft",
        "ShiftLeft", "AltLeft", "MetaLeft", "ControlRight", "ShiftRight", "AltRight",
        "MetaRight", "Power", "AudioVolumeMute", "AudioVolumeUp", "AudioVolumeDown",
        "MediaPlayPause", "MediaStop", "MediaTrackNext", "MediaTrackPrevious",
        # the keys of Japanese keyboards (PiKVM's web names include them)
        "IntlYen", "IntlRo", "KanaMode", "Convert", "NonConvert",
    ]  # fmt: skip
    return tuple(codes)


CODES: tuple[str, ...] = _build_codes()
"""Every physical key code remotehands knows, W3C spelling."""

_CODE_BY_LOWER = {code.lower(): code for code in CODES}

_ALIASES: dict[str, str] = {
    "ctrl": "ControlLeft", "control": "ControlLeft", "lctrl": "ControlLeft",
    "rctrl": "ControlRight", "shift": "ShiftLeft", "lshift": "ShiftLeft",
    "rshift": "ShiftRight", "alt": "AltLeft", "lalt": "AltLeft", "ralt": "AltRight",
    "altgr": "AltRight", "option": "AltLeft", "meta": "MetaLeft", "super": "MetaLeft",
    "win": "MetaLeft", "windows": "MetaLeft", "cmd": "MetaLeft", "command": "MetaLeft",
    "enter": "Enter", "return": "Enter", "esc": "Escape", "escape": "Escape", "tab": "Tab",
    "space": "Space", "spacebar": "Space", "backspace": "Backspace", "bksp": "Backspace",
    "delete": "Delete", "del": "Delete", "insert": "Insert", "ins": "Insert", "home": "Home",
    "end": "End", "pageup": "PageUp", "pgup": "PageUp", "pagedown": "PageDown",
    "pgdn": "PageDown", "up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft",
    "right": "ArrowRight", "capslock": "CapsLock", "caps": "CapsLock",
    "printscreen": "PrintScreen", "prtsc": "PrintScreen", "print": "PrintScreen",
    "menu": "ContextMenu", "apps": "ContextMenu", "pause": "Pause", "break": "Pause",
    "numlock": "NumLock", "scrolllock": "ScrollLock", "plus": "Equal", "minus": "Minus",
    "volumeup": "AudioVolumeUp", "volumedown": "AudioVolumeDown", "mute": "AudioVolumeMute",
}  # fmt: skip

# Characters that name the unshifted key producing them on a US layout.
_CHAR_CODES: dict[str, str] = {
    **{c: f"Key{c.upper()}" for c in string.ascii_lowercase},
    **{str(d): f"Digit{d}" for d in range(10)},
    "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight", "\\": "Backslash",
    ";": "Semicolon", "'": "Quote", "`": "Backquote", ",": "Comma", ".": "Period",
    "/": "Slash", " ": "Space",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a combination: a physical ``code`` or a ``char`` to produce, never both."""

    code: str | None = None
    char: str | None = None

    def __str__(self) -> str:
        return self.code if self.code is not None else repr(self.char)

    def to_wire(self) -> str | dict[str, str]:
        """The JSON form: the code as a string, or ``{"char": c}``."""
        if self.code is not None:
            return self.code
        assert self.char is not None
        return {"char": self.char}


def parse_key(value: Any) -> Key:
    """Turn a key name (``"ctrl"``, ``"KeyA"``, ``"s"``) or ``{"char": "é"}`` into a :class:`Key`.

    Raises :class:`ValidationError` naming the key when it is unknown.
    """
    if isinstance(value, Key):
        return value
    if isinstance(value, dict):
        char = value.get("char")
        if set(value) != {"char"} or not isinstance(char, str) or len(char) != 1:
            raise ValidationError(
                f'invalid key {value!r}: a character key is written {{"char": "s"}} with '
                "exactly one character"
            )
        return Key(char=char)
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"invalid key {value!r}: give a key name such as 'ctrl', 'Enter' or 'KeyA'"
        )
    lower = value.lower()
    if lower in _CODE_BY_LOWER:
        return Key(code=_CODE_BY_LOWER[lower])
    if lower in _ALIASES:
        return Key(code=_ALIASES[lower])
    if len(value) == 1:
        if value in _CHAR_CODES:
            return Key(code=_CHAR_CODES[value])
        if value.lower() in _CHAR_CODES:
            return Key(code=_CHAR_CODES[value.lower()])
        return Key(char=value)
    raise ValidationError(
        f"unknown key name {value!r}: use a W3C KeyboardEvent.code name (KeyA, Digit1, Enter, "
        "ArrowUp, ControlLeft, F5, ...), an alias (ctrl, shift, alt, meta, enter, esc, tab, "
        'pgdn, ...) or {"char": "x"} for a character'
    )


def parse_combo(text: str) -> list[Key]:
    """Parse ``"ctrl+shift+t"`` into keys; ``"+"`` alone or at the end means the plus character."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("empty key combination: give keys such as 'ctrl+c' or 'Enter'")
    text = text.strip()
    if text == "+":
        return [Key(char="+")]
    trailing_plus = text.endswith("++")
    parts = text[:-2].split("+") if trailing_plus else text.split("+")
    if any(not p.strip() for p in parts):
        raise ValidationError(f"invalid key combination {text!r}: an empty key between '+' signs")
    keys = [parse_key(p.strip()) for p in parts]
    if trailing_plus:
        keys.append(Key(char="+"))
    return keys


MAX_CHORD = 16
"""The most keys held together: more is no chord, only a way to hold a device for long."""


def parse_keys(value: Any) -> list[Key]:
    """Accept a combination string, one key dict, or a list of names and ``{"char"}`` dicts;
    at most :data:`MAX_CHORD` keys in all."""
    keys = _parse_keys(value)
    if len(keys) > MAX_CHORD:
        raise ValidationError(
            f"{len(keys)} keys pressed together: at most {MAX_CHORD}; type text with type"
        )
    return keys


def _parse_keys(value: Any) -> list[Key]:
    if isinstance(value, str):
        return parse_combo(value)
    if isinstance(value, dict):
        return [parse_key(value)]
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        if not value:
            raise ValidationError("no keys given: name at least one key")
        keys: list[Key] = []
        for item in value:
            keys.extend(
                parse_combo(item)
                if isinstance(item, str) and "+" in item[1:]
                else [parse_key(item)]
            )
        return keys
    raise ValidationError(f"invalid keys {value!r}: give 'ctrl+s' or a list such as ['ctrl', 's']")
