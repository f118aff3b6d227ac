"""Characters as keystrokes, per keyboard layout of the target machine (en-US, en-GB, de-DE).

A KVM types by pressing physical keys; what appears depends on the layout the target's
operating system uses. These tables say which key (a W3C ``KeyboardEvent.code`` name, as the
TinyPilot API takes it) and which modifiers give each character on each layout, for the three
layouts TinyPilot's own paste supports. A character a layout cannot type is refused as a whole
request, naming every such character, as TinyPilot does (``These characters are not
supported: 'x'``). An unknown layout name is a configuration error here; the TinyPilot face
falls back to en-US for unknown language tags, as TinyPilot does.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from remotehands.errors import ValidationError

__all__ = ["LAYOUTS", "Layout", "Stroke", "strokes", "unsupported"]

Layout = Literal["en-US", "en-GB", "de-DE"]


@dataclass(frozen=True, slots=True)
class Stroke:
    """One keystroke: a key code, pressed with Shift and/or AltGr (the right Alt key)."""

    code: str
    shift: bool = False
    altgr: bool = False

    def keystroke(self) -> dict[str, str | bool]:
        """The body of TinyPilot's ``POST /api/v1/keystroke`` for this stroke."""
        body: dict[str, str | bool] = {"code": self.code}
        if self.shift:
            body["shiftLeft"] = True
        if self.altgr:
            body["altRight"] = True
        return body


def _keys(pairs: str, shifted: str, codes: list[str]) -> dict[str, Stroke]:
    """``pairs[i]`` unshifted and ``shifted[i]`` shifted on the key ``codes[i]``."""
    table: dict[str, Stroke] = {}
    for plain, shift, code in zip(pairs, shifted, codes, strict=True):
        if plain != " ":
            table[plain] = Stroke(code)
        if shift != " ":
            table[shift] = Stroke(code, shift=True)
    return table


_DIGITS = [f"Digit{d}" for d in "1234567890"]

# what every layout has in the same place: letters (QWERTY), digits, whitespace
_COMMON: dict[str, Stroke | None] = {
    "\r": None,  # a line ends with \n alone: CR LF must not press Enter twice
    "\t": Stroke("Tab"),
    "\n": Stroke("Enter"),
    " ": Stroke("Space"),
    **{c: Stroke(f"Key{c.upper()}") for c in string.ascii_lowercase},
    **{c: Stroke(f"Key{c}", shift=True) for c in string.ascii_uppercase},
    **{d: Stroke(f"Digit{d}") for d in string.digits},
}

_PUNCTUATION = ["Minus", "Equal", "BracketLeft", "BracketRight", "Semicolon", "Quote", "Comma",
                "Period", "Slash", "Backquote", "Backslash"]  # fmt: skip

_US: dict[str, Stroke | None] = {
    **_COMMON,
    **_keys("1234567890", "!@#$%^&*()", _DIGITS),
    **_keys("-=[];',./`\\", '_+{}:"<>?~|', _PUNCTUATION),
}

_GB: dict[str, Stroke | None] = {
    **_COMMON,
    **_keys("1234567890", '!"£$%^&*()', _DIGITS),
    # on an ISO board the key US calls Backslash is the one beside Enter: # and ~
    **_keys("-=[];',./`#", "_+{}:@<>?¬~", _PUNCTUATION),
    **_keys("\\", "|", ["IntlBackslash"]),
    "€": Stroke("Digit4", altgr=True),
}

_DE: dict[str, Stroke | None] = {
    **_COMMON,
    # QWERTZ: the keys US calls Y and Z are swapped
    "y": Stroke("KeyZ"), "z": Stroke("KeyY"),
    "Y": Stroke("KeyZ", shift=True), "Z": Stroke("KeyY", shift=True),
    **_keys("1234567890", '!"§$%&/()=', _DIGITS),
    **_keys("ß+üöä,.-#", "?*ÜÖÄ;:_'", ["Minus", "BracketRight", "BracketLeft", "Semicolon",
                                       "Quote", "Comma", "Period", "Slash", "Backslash"]),
    **_keys("<", ">", ["IntlBackslash"]),
    "°": Stroke("Backquote", shift=True),
    # AltGr (right Alt) gives the third level
    "@": Stroke("KeyQ", altgr=True), "€": Stroke("KeyE", altgr=True),
    "{": Stroke("Digit7", altgr=True), "[": Stroke("Digit8", altgr=True),
    "]": Stroke("Digit9", altgr=True), "}": Stroke("Digit0", altgr=True),
    "\\": Stroke("Minus", altgr=True), "~": Stroke("BracketRight", altgr=True),
    "|": Stroke("IntlBackslash", altgr=True), "µ": Stroke("KeyM", altgr=True),
    "²": Stroke("Digit2", altgr=True), "³": Stroke("Digit3", altgr=True),
}  # fmt: skip

LAYOUTS: Mapping[str, Mapping[str, Stroke | None]] = {"en-US": _US, "en-GB": _GB, "de-DE": _DE}
"""Layout name -> character -> its stroke (``None``: a character that is skipped)."""


def unsupported(text: str, layout: str) -> list[str]:
    """The characters of ``text`` that ``layout`` cannot type, each once, in order."""
    table = LAYOUTS[layout]
    return list(dict.fromkeys(char for char in text if char not in table))


def strokes(text: str, layout: str) -> list[Stroke]:
    """The keystrokes that type ``text`` on a target using ``layout``.

    :class:`ValidationError` names every character the layout cannot type (nothing is typed
    then), in TinyPilot's words.
    """
    if layout not in LAYOUTS:
        raise ValidationError(
            f"unknown keyboard layout {layout!r}: choose one of {', '.join(LAYOUTS)}"
        )
    missing = unsupported(text, layout)
    if missing:
        raise ValidationError(
            "These characters are not supported: " + ", ".join(map(repr, missing))
        )
    table = LAYOUTS[layout]
    return [stroke for char in text if (stroke := table[char]) is not None]
