"""Keys to X keycodes: W3C codes and characters to keysyms, keysyms to keycodes.

An X server turns a keycode into a keysym through its keyboard mapping, so the driver works
backwards: a W3C ``code`` names the keysym of that key on a US layout, a character names its
keysym (Latin-1 keysyms equal the code point, every other character has the Unicode keysym
``0x01000000 + code point``), and :class:`Keymap` finds the keycode and shift level that produce
that keysym on the server's current mapping.

When no key produces a keysym (``é``, ``✓`` or ``日`` on a US layout), :class:`Keymap` borrows a
*spare* keycode, one the server maps to nothing, binds the keysym to it with
``ChangeKeyboardMapping`` and gives it back later, as xdotool does. Clients do not see the
mapping change when it happens but when they get to the ``MappingNotify`` it causes, and some
(Tk, through Xlib) translate a key event with the mapping they knew when they *read* it: a key
event read together with the notice of its own binding comes out as the old keysym or as none.
xdotool, which binds one keycode per character, loses characters that way. So bindings change
as rarely as possible, and never under a key event in flight:

- the characters of a text are bound together, as many as there are spare keycodes, and then
  :meth:`Keymap.bind` waits :data:`BIND_PAUSE_S` so that clients read the notice on its own,
  before any of those characters is typed;
- a keycode is rebound only :data:`SETTLE_S` after its last key event;
- the driver gives borrowed keycodes back once typing has been idle for a while
  (``RESTORE_IDLE_S`` in the driver), not right after the last key.

Everything here runs on the driver's X thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from Xlib import X
from Xlib.display import Display

from remotehands.errors import ValidationError
from remotehands.protocol.keys import CODES, Key

__all__ = [
    "BIND_PAUSE_S",
    "CODE_KEYSYMS",
    "SETTLE_S",
    "Keymap",
    "Stroke",
    "char_keysyms",
]

NO_SYMBOL = 0

BIND_PAUSE_S = 0.05
"""How long :meth:`Keymap.bind` waits after changing bindings, before keys may use them."""

SETTLE_S = 0.2
"""The least time a borrowed keycode keeps its binding after its last key event, so that the
client that receives the event still finds the keysym when it looks the keycode up."""

UNICODE_KEYSYM_BASE = 0x01000000

# Keysym values from X11/keysymdef.h and XF86keysym.h. Where a key has several keysyms on common
# layouts (AltRight is Alt_R on "us" and ISO_Level3_Shift on most others) every one is listed;
# the first is the one bound to a spare keycode when the layout has none of them.
_NAMED: dict[str, tuple[int, ...]] = {
    "Enter": (0xFF0D,),  # Return
    "Escape": (0xFF1B,),
    "Backspace": (0xFF08,),
    "Tab": (0xFF09,),
    "Space": (0x0020,),
    "Minus": (0x002D,),
    "Equal": (0x003D,),
    "BracketLeft": (0x005B,),
    "BracketRight": (0x005D,),
    "Backslash": (0x005C,),
    "Semicolon": (0x003B,),
    "Quote": (0x0027,),
    "Backquote": (0x0060,),
    "Comma": (0x002C,),
    "Period": (0x002E,),
    "Slash": (0x002F,),
    "CapsLock": (0xFFE5,),
    "PrintScreen": (0xFF61,),  # Print
    "ScrollLock": (0xFF14,),
    "Pause": (0xFF13,),
    "Insert": (0xFF63,),
    "Home": (0xFF50,),
    "PageUp": (0xFF55,),  # Prior
    "Delete": (0xFFFF,),
    "End": (0xFF57,),
    "PageDown": (0xFF56,),  # Next
    "ArrowRight": (0xFF53,),
    "ArrowLeft": (0xFF51,),
    "ArrowDown": (0xFF54,),
    "ArrowUp": (0xFF52,),
    "NumLock": (0xFF7F,),
    "NumpadDivide": (0xFFAF,),
    "NumpadMultiply": (0xFFAA,),
    "NumpadSubtract": (0xFFAD,),
    "NumpadAdd": (0xFFAB,),
    "NumpadEnter": (0xFF8D,),
    "NumpadDecimal": (0xFFAE, 0xFF9F),  # KP_Decimal, KP_Delete
    "IntlBackslash": (0x003C,),  # less, the extra key of ISO keyboards
    "ContextMenu": (0xFF67,),  # Menu
    "ControlLeft": (0xFFE3,),
    "ShiftLeft": (0xFFE1,),
    "AltLeft": (0xFFE9,),
    "MetaLeft": (0xFFEB,),  # Super_L
    "ControlRight": (0xFFE4,),
    "ShiftRight": (0xFFE2,),
    "AltRight": (0xFFEA, 0xFE03),  # Alt_R, ISO_Level3_Shift
    "MetaRight": (0xFFEC,),  # Super_R
    "Power": (0x1008FF2A,),  # XF86PowerOff
    "AudioVolumeMute": (0x1008FF12,),
    "AudioVolumeUp": (0x1008FF13,),
    "AudioVolumeDown": (0x1008FF11,),
    "MediaPlayPause": (0x1008FF14,),  # XF86AudioPlay
    "MediaStop": (0x1008FF15,),
    "MediaTrackNext": (0x1008FF17,),
    "MediaTrackPrevious": (0x1008FF16,),
    "IntlYen": (0x00A5,),  # yen
    "IntlRo": (0x04DB,),  # kana_RO
    "KanaMode": (0xFF27, 0xFF26),  # Hiragana_Katakana, Katakana
    "Convert": (0xFF23,),  # Henkan_Mode
    "NonConvert": (0xFF22,),  # Muhenkan
}

# The keypad digits are the same physical keys as the keypad's navigation keys; with Num Lock
# off the server maps them to KP_Insert, KP_End, ... at level 1.
_KEYPAD_NAVIGATION = (
    0xFF9E,
    0xFF9C,
    0xFF99,
    0xFF9B,
    0xFF96,
    0xFF9D,
    0xFF98,
    0xFF95,
    0xFF97,
    0xFF9A,
)


def _build_code_keysyms() -> dict[str, tuple[int, ...]]:
    table: dict[str, tuple[int, ...]] = {}
    for letter in range(26):
        table[f"Key{chr(ord('A') + letter)}"] = (ord("a") + letter,)
    for digit in range(10):
        table[f"Digit{digit}"] = (ord("0") + digit,)
        table[f"Numpad{digit}"] = (0xFFB0 + digit, _KEYPAD_NAVIGATION[digit])
    for number in range(1, 25):
        table[f"F{number}"] = (0xFFBE + number - 1,)
    table.update(_NAMED)
    return table


CODE_KEYSYMS: dict[str, tuple[int, ...]] = _build_code_keysyms()
"""Every W3C code :mod:`remotehands.protocol.keys` knows, to the keysyms its key carries."""

_missing = set(CODES) - set(CODE_KEYSYMS)
if _missing:  # pragma: no cover - a guard for whoever adds a code to protocol.keys
    raise RuntimeError(f"x11 keymap lacks keysyms for {sorted(_missing)}")

# Characters typed as keys rather than as their (control) code points.
_CONTROL_KEYSYMS: dict[str, int] = {
    "\n": 0xFF0D,  # Return
    "\r": 0xFF0D,
    "\t": 0xFF09,  # Tab
    "\b": 0xFF08,  # BackSpace
    "\x1b": 0xFF1B,  # Escape
    "\x7f": 0xFFFF,  # Delete
}

_SHIFT_L = 0xFFE1


def char_keysyms(char: str) -> tuple[int, ...]:
    """The keysyms that produce ``char``, the one to bind to a spare keycode first.

    Raises :class:`ValidationError` for control characters that have no key.
    """
    if len(char) != 1:
        raise ValidationError(f"expected one character, got {char!r}")
    if char in _CONTROL_KEYSYMS:
        return (_CONTROL_KEYSYMS[char],)
    point = ord(char)
    if point < 0x20 or 0x80 <= point < 0xA0:
        raise ValidationError(
            f"cannot type the control character U+{point:04X}: only newline, tab, backspace, "
            "escape and delete have keys; send other keys by name"
        )
    if point <= 0xFF:
        return (point, UNICODE_KEYSYM_BASE + point)
    return (UNICODE_KEYSYM_BASE + point,)


@dataclass(frozen=True, slots=True)
class Stroke:
    """How to produce one keysym: press ``keycode``, with Shift held when ``shift`` is set.

    ``spare`` marks a borrowed keycode.
    """

    keycode: int
    shift: bool = False
    spare: bool = False


class Keymap:
    """The server's keyboard mapping as the driver needs it, plus borrowed spare keycodes.

    Resolving a key answers either a :class:`Stroke` on the server's own mapping or, when no
    key carries the keysym, the keysym itself: the caller then binds it (:meth:`bind`, several
    at once) and gives the keycodes back later (:meth:`restore`).

    Build it on the X thread; call :meth:`reload` when a ``MappingNotify`` says another client
    changed the mapping.
    """

    def __init__(self, display: Display) -> None:
        self._display = display
        self._min = int(display.display.info.min_keycode)
        self._max = int(display.display.info.max_keycode)
        self._rows: list[tuple[int, ...]] = []
        self._index: dict[int, tuple[int, int]] = {}
        self._alphabetic: set[int] = set()
        self._modifier_keycodes: list[list[int]] = []
        # Spare keycode -> keysym bound to it now (NO_SYMBOL when free).
        self._bound: dict[int, int] = {}
        # Spare keycode -> when its last key event went out (monotonic seconds).
        self._last_used: dict[int, float] = {}
        # Spare keycode -> how many held keys use it; those are never rebound or restored.
        self._held: dict[int, int] = {}
        self.reload()
        self._bound = {keycode: NO_SYMBOL for keycode in self._find_spares()}

    # -- reading the mapping -------------------------------------------------------------

    def reload(self) -> None:
        """Read the server's keyboard and modifier mappings again."""
        rows = self._display.get_keyboard_mapping(self._min, self._max - self._min + 1)
        self._rows = [tuple(int(sym) for sym in row) for row in rows]
        # A spare keycode that another client has mapped since is no longer ours to borrow.
        for keycode, bound in list(self._bound.items()):
            server = {sym for sym in self._rows[keycode - self._min] if sym != NO_SYMBOL}
            if server and server != {bound}:
                del self._bound[keycode]
        index: dict[int, tuple[int, int]] = {}
        alphabetic: set[int] = set()
        # Only the two levels of group 1 are considered: the other columns need AltGr or a
        # group switch, which XTest cannot reach reliably without XKB.
        for level in (0, 1):
            for offset, row in enumerate(self._rows):
                keycode = self._min + offset
                if keycode in self._bound:
                    continue
                if level < len(row) and row[level] != NO_SYMBOL:
                    index.setdefault(row[level], (keycode, level))
        for offset, row in enumerate(self._rows):
            if len(row) >= 2 and _is_case_pair(row[0], row[1]):
                alphabetic.add(self._min + offset)
        self._index = index
        self._alphabetic = alphabetic
        self._modifier_keycodes = [
            [int(code) for code in codes if code] for codes in self._display.get_modifier_mapping()
        ]

    def _find_spares(self) -> list[int]:
        # Keycode 8 is skipped: some XKB keymaps give it meaning without a symbol. Highest
        # first, so that borrowed keycodes stay clear of keys a real keyboard might send.
        spares = [
            self._min + offset
            for offset, row in enumerate(self._rows)
            if all(sym == NO_SYMBOL for sym in row) and self._min + offset > 8
        ]
        return sorted(spares, reverse=True)

    @property
    def spare_keycodes(self) -> tuple[int, ...]:
        """The keycodes this keymap may borrow."""
        return tuple(self._bound)

    @property
    def borrowed(self) -> dict[int, int]:
        """Spare keycodes bound right now, to their keysyms."""
        return {code: sym for code, sym in self._bound.items() if sym != NO_SYMBOL}

    @property
    def capacity(self) -> int:
        """How many keysyms can be bound at once: the spare keycodes no held key uses."""
        return sum(1 for code in self._bound if not self._held.get(code))

    def modifier_keycodes(self, index: int) -> list[int]:
        """Keycodes of the modifier with ``index`` (``X.ShiftMapIndex`` ...)."""
        if index < len(self._modifier_keycodes):
            return self._modifier_keycodes[index]
        return []

    def shift_keycode(self) -> int:
        """A keycode that acts as Shift."""
        found = self._index.get(_SHIFT_L)
        if found is not None:
            return found[0]
        shifts = self.modifier_keycodes(X.ShiftMapIndex)
        if shifts:
            return shifts[0]
        return self.bind([_SHIFT_L])[_SHIFT_L]

    # -- resolving keys ------------------------------------------------------------------

    def lookup_code(self, code: str) -> Stroke | int:
        """The physical key named by a W3C ``code`` (never with Shift), or the keysym to bind."""
        keysyms = CODE_KEYSYMS.get(code)
        if keysyms is None:
            raise ValidationError(f"unknown key code {code!r}: use a W3C KeyboardEvent.code name")
        for keysym in keysyms:
            found = self._index.get(keysym)
            if found is not None:
                return Stroke(found[0])
        for keysym in keysyms:
            if keysym in self._bound.values():
                return keysym
        return keysyms[0]

    def lookup_char(self, char: str, caps_lock: bool = False) -> Stroke | int:
        """The key and shift level that type ``char`` on the server's mapping, or the keysym to
        bind when no key has it. ``caps_lock`` inverts Shift on alphabetic keys."""
        keysyms = char_keysyms(char)
        for keysym in keysyms:
            found = self._index.get(keysym)
            if found is not None:
                keycode, level = found
                shift = level == 1
                if caps_lock and keycode in self._alphabetic:
                    shift = not shift
                return Stroke(keycode, shift=shift)
        return keysyms[0]

    def lookup(self, key: Key, caps_lock: bool = False) -> Stroke | int:
        """:meth:`lookup_code` or :meth:`lookup_char`, as ``key`` says."""
        if key.code is not None:
            return self.lookup_code(key.code)
        if key.char is None:
            raise ValidationError("a key needs a code or a char")
        return self.lookup_char(key.char, caps_lock)

    def stroke(self, key: Key, caps_lock: bool = False) -> Stroke:
        """The stroke for ``key``, binding a spare keycode when needed."""
        found = self.lookup(key, caps_lock)
        if isinstance(found, Stroke):
            return found
        return Stroke(self.bind([found])[found], spare=True)

    # -- borrowed keycodes ---------------------------------------------------------------

    def bind(self, keysyms: Iterable[int]) -> dict[int, int]:
        """Bind every keysym of ``keysyms`` to a spare keycode (at most :attr:`capacity` of
        them); answers keysym -> keycode.

        A keycode is only rebound once its last key event has settled (:data:`SETTLE_S`), so
        binding waits when every free keycode was used a moment ago; after a change it waits
        :data:`BIND_PAUSE_S` more, for clients to take the new mapping in.
        """
        wanted = list(dict.fromkeys(keysyms))
        result = {sym: code for code, sym in self._bound.items() if sym in wanted}
        missing = [sym for sym in wanted if sym not in result]
        if not missing:
            return result
        keep = set(result.values())
        candidates = [code for code in self._bound if code not in keep and not self._held.get(code)]
        if len(candidates) < len(missing):
            raise ValidationError(
                f"{len(wanted)} characters need spare keycodes at once and only "
                f"{self.capacity} are free: release held character keys first"
            )
        # Free keycodes first, then the least recently used.
        candidates.sort(
            key=lambda code: (self._bound[code] != NO_SYMBOL, self._last_used.get(code, 0.0))
        )
        for keysym, keycode in zip(missing, candidates, strict=False):
            self._settle(keycode)
            # Both levels carry the keysym so that a held Shift cannot change what it types,
            # and so that Xlib does not turn a lone upper-case keysym into a lower/upper pair.
            self._display.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self._bound[keycode] = keysym
            result[keysym] = keycode
        self._display.sync()
        time.sleep(BIND_PAUSE_S)
        return result

    def _settle(self, keycode: int) -> None:
        wait = self._last_used.get(keycode, 0.0) + SETTLE_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def used(self, keycode: int) -> None:
        """Note that a key event for ``keycode`` went out just now."""
        if keycode in self._bound:
            self._last_used[keycode] = time.monotonic()

    def hold(self, keycode: int) -> None:
        """Keep a borrowed keycode bound while a key holds it down."""
        if keycode in self._bound:
            self._held[keycode] = self._held.get(keycode, 0) + 1

    def unhold(self, keycode: int) -> None:
        """The key holding ``keycode`` was released."""
        if self._held.get(keycode):
            self._held[keycode] -= 1

    def restore(self, idle_s: float = SETTLE_S, wait: bool = True) -> bool:
        """Give back borrowed keycodes that no held key uses and that have been idle for
        ``idle_s``; with ``wait``, wait for those not idle long enough yet instead of skipping
        them. Answers whether every borrowed keycode not held down is back."""
        now = time.monotonic()
        restored = False
        for code, sym in self._bound.items():
            if sym == NO_SYMBOL or self._held.get(code):
                continue
            remaining = self._last_used.get(code, 0.0) + idle_s - now
            if remaining > 0:
                if not wait:
                    continue
                time.sleep(remaining)
                now = time.monotonic()
            self._display.change_keyboard_mapping(code, [(NO_SYMBOL,)])
            self._bound[code] = NO_SYMBOL
            restored = True
        if restored:
            self._display.sync()
        return all(self._held.get(code) for code in self.borrowed)


def _is_case_pair(lower: int, upper: int) -> bool:
    """Whether two keysyms are the lower and upper case of one letter (an alphabetic key)."""
    low, up = _keysym_char(lower), _keysym_char(upper)
    return low is not None and up is not None and low != up and low.upper() == up


def _keysym_char(keysym: int) -> str | None:
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return chr(keysym)
    if keysym & 0xFF000000 == UNICODE_KEYSYM_BASE:
        return chr(keysym & 0x00FFFFFF)
    return None
