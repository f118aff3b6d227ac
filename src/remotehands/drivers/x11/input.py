"""Pointer and keyboard input through the XTEST extension.

XTEST events are indistinguishable from a real device's, unlike ``SendEvent`` (which many
toolkits ignore). :class:`Input` tracks every key and button it holds down so that
``release_all`` (and closing the driver) can let go of them: a key left pressed by a crashed
session stays pressed on the desktop.

Everything here runs on the driver's X thread.
"""

from __future__ import annotations

import select
import struct
from collections import Counter
from collections.abc import Iterator

from Xlib import X
from Xlib.ext import xtest
from Xlib.protocol import event as xevent

from remotehands.drivers.base import Button
from remotehands.drivers.x11.display import XConnection
from remotehands.drivers.x11.keymap import Keymap, Stroke, char_keysyms
from remotehands.errors import ConfigError, ValidationError
from remotehands.protocol.keys import CODES, Key

__all__ = ["BUTTONS", "MAX_CLICKS", "MAX_SCROLL", "Input"]

BUTTONS: dict[str, int] = {"left": 1, "middle": 2, "right": 3}
"""Pointer button names to X button numbers."""

_SCROLL_UP, _SCROLL_DOWN, _SCROLL_LEFT, _SCROLL_RIGHT = 4, 5, 6, 7

MAX_CLICKS = 10
"""The most clicks one ``click`` sends (a triple click is 3)."""

MAX_SCROLL = 1000
"""The most wheel notches one ``scroll`` sends on each axis."""


_MOTION = struct.Struct("=BBHBBxxIIxxxxxxxxhhxxxxxxxx")
"""XTEST's FakeInput request (minor opcode 2, nine 4-byte units) for a pointer motion: major
opcode, minor opcode, length, event type, detail, time, root window, x, y; in the client's byte
order, as python-xlib writes it."""


class _RawRequest:
    """A request already in its wire form, for python-xlib's queue (it reads ``_binary`` and
    numbers it in ``_serial``): a motion's bytes packed directly cost a few microseconds where
    python-xlib's request classes take tens."""

    __slots__ = ("_binary", "_serial")

    def __init__(self, binary: bytes) -> None:
        self._binary = binary
        self._serial = 0


class Input:
    """XTEST pointer and keyboard on one connection, with the keys and buttons it holds."""

    def __init__(self, conn: XConnection) -> None:
        if not conn.display.has_extension("XTEST"):
            raise ConfigError(
                "the X server lacks the XTEST extension, which the x11 driver needs for input; "
                "start it with +extension XTEST"
            )
        self._conn = conn
        self._display = conn.display
        self._xtest_opcode = conn.display.display.get_extension_major(xtest.extname)
        self.keymap = Keymap(conn.display)
        # Keys held through ``key(down=True)``, to the keycodes pressed for them (in order).
        self._held_keys: dict[Key, list[int]] = {}
        # How many held keys share a keycode (Shift may be pressed for several).
        self._keycode_refs: Counter[int] = Counter()
        self._held_buttons: set[int] = set()
        # The desktop's size, kept from a ConfigureNotify of the root window (RandR resizes
        # send one) instead of asked of the server before every move: a round trip saved.
        self._root_size = conn.root_size()
        conn.root.change_attributes(event_mask=X.StructureNotifyMask)
        conn.check()

    # -- state ---------------------------------------------------------------------------

    @property
    def held_keys(self) -> list[Key]:
        """Keys this driver holds down, oldest first."""
        return list(self._held_keys)

    @property
    def held_buttons(self) -> list[int]:
        """X button numbers this driver holds down."""
        return sorted(self._held_buttons)

    @property
    def root_size(self) -> tuple[int, int]:
        """The desktop's size as last announced (call :meth:`handle_events` first)."""
        return self._root_size

    def down_on_server(self) -> tuple[list[str], list[Button]]:
        """Keys and buttons the X server has down now (from every client and device): key
        codes in W3C spelling (``keycode N`` for a key with none) and button names."""
        keymap = self._display.query_keymap()
        keycodes = [8 * i + bit for i, byte in enumerate(keymap) for bit in range(8)
                    if byte & (1 << bit)]  # fmt: skip
        names: dict[int, str] = {}
        if keycodes:
            for code in CODES:
                try:
                    found = self.keymap.lookup_code(code)
                except ValidationError:
                    continue  # a code this keymap has no keysym for cannot be down
                if isinstance(found, Stroke):
                    names.setdefault(found.keycode, code)
        mask = int(self._conn.root.query_pointer().mask)
        masks: dict[Button, int] = {"left": X.Button1Mask, "middle": X.Button2Mask,
                                    "right": X.Button3Mask}  # fmt: skip
        buttons = [name for name, bit in masks.items() if mask & bit]
        return [names.get(k, f"keycode {k}") for k in keycodes], buttons

    def handle_events(self) -> None:
        """Read queued events; reload the keymap when another client changed it."""
        reload = False
        while self._display.pending_events():
            event = self._display.next_event()
            if isinstance(event, xevent.MappingNotify) and event.request in (
                X.MappingKeyboard,
                X.MappingModifier,
            ):
                reload = True
            elif isinstance(event, xevent.ConfigureNotify) and event.window == self._conn.root:
                self._root_size = (int(event.width), int(event.height))
        if reload:
            self.keymap.reload()

    # -- pointer -------------------------------------------------------------------------

    def position(self) -> tuple[int, int]:
        """Where the pointer is, in root (virtual desktop) pixels."""
        pointer = self._conn.root.query_pointer()
        return int(pointer.root_x), int(pointer.root_y)

    def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)`` on the virtual desktop.

        No round trip: the size is the one last announced (events are read first), and the
        motion is only flushed. XTEST motion to a point on the screen cannot fail; were it to,
        the next checked request (a click, a key) reports it.
        """
        self._fake_motion(x, y)
        self._display.flush()

    def move_now(self, x: int, y: int) -> bool:
        """:meth:`move` without its flush (the caller flushes: :meth:`flush`), if it can be done
        without waiting on the X server: no event to read first and room to write in the
        connection. False: nothing was done."""
        if self._display.pending_events():
            return False
        if not select.select([], [self._display.fileno()], [], 0)[1]:
            return False
        self._fake_motion(x, y, events_read=True)
        return True

    def flush(self) -> None:
        """Write the requests queued on the connection (a motion of :meth:`move_now`)."""
        self._display.flush()

    def _fake_motion(self, x: int, y: int, *, events_read: bool = False) -> None:
        if not events_read:
            self.handle_events()
        width, height = self._root_size
        if not (0 <= x < width and 0 <= y < height):
            raise ValidationError(
                f"({x}, {y}) is off the screen: the desktop is {width}x{height}, so use "
                f"0 <= x < {width} and 0 <= y < {height}"
            )
        # xtest.fake_input(self._display, X.MotionNotify, x=x, y=y), packed directly
        motion = _MOTION.pack(self._xtest_opcode, 2, _MOTION.size // 4, X.MotionNotify, 0,
                              X.CurrentTime, X.NONE, x, y)  # fmt: skip
        self._display.display.send_request(_RawRequest(motion), False)

    def button(self, button: Button, down: bool) -> None:
        """Press or release ``button`` where the pointer is."""
        number = _button_number(button)
        self._fake_button(number, down)
        self._conn.check()

    def click(self, button: Button, count: int, at: tuple[int, int] | None = None) -> None:
        """Press and release ``button`` ``count`` times, back to back so that ``count=2`` is a
        double click for any toolkit's double-click time; first move to ``at`` when given (in
        the same batch of requests: one round trip for the whole click)."""
        number = _button_number(button)
        if not 1 <= count <= MAX_CLICKS:
            raise ValidationError(f"click count {count} is out of range: use 1 to {MAX_CLICKS}")
        if at is not None:
            self._fake_motion(*at)
        for _ in range(count):
            self._fake_button(number, True)
            self._fake_button(number, False)
        self._conn.check()

    def scroll(self, delta_x: int, delta_y: int) -> None:
        """One wheel notch per unit: buttons 5/4 for down/up, 7/6 for right/left."""
        for delta in (delta_x, delta_y):
            if abs(delta) > MAX_SCROLL:
                raise ValidationError(
                    f"scroll delta {delta} is too large: use at most {MAX_SCROLL} notches a call"
                )
        vertical = _SCROLL_DOWN if delta_y > 0 else _SCROLL_UP
        horizontal = _SCROLL_RIGHT if delta_x > 0 else _SCROLL_LEFT
        for number, notches in ((vertical, abs(delta_y)), (horizontal, abs(delta_x))):
            for _ in range(notches):
                xtest.fake_input(self._display, X.ButtonPress, number)
                xtest.fake_input(self._display, X.ButtonRelease, number)
        self._conn.check()

    def _fake_button(self, number: int, down: bool) -> None:
        xtest.fake_input(self._display, X.ButtonPress if down else X.ButtonRelease, number)
        if down:
            self._held_buttons.add(number)
        else:
            self._held_buttons.discard(number)

    # -- keyboard ------------------------------------------------------------------------

    def key(self, key: Key, down: bool) -> None:
        """Press (and hold) or release one key."""
        self.handle_events()
        if down:
            self._press_key(key)
        else:
            self._release_key(key)
        self._conn.check()

    def _press_key(self, key: Key) -> None:
        if key in self._held_keys:
            return  # already down: a second press of a held key would be an autorepeat
        stroke = self.keymap.stroke(key, self._caps_lock())
        keycodes = []
        if stroke.shift:
            keycodes.append(self.keymap.shift_keycode())
        keycodes.append(stroke.keycode)
        for keycode in keycodes:
            self.keymap.hold(keycode)
            self._keycode_refs[keycode] += 1
            if self._keycode_refs[keycode] == 1:
                xtest.fake_input(self._display, X.KeyPress, keycode)
            self.keymap.used(keycode)
        self._held_keys[key] = keycodes

    def _release_key(self, key: Key) -> None:
        keycodes = self._held_keys.pop(key, None)
        if keycodes is None:
            # Not held by us; release its key anyway in case another client left it down.
            if key.code is None and key.char is None:
                return
            found = self.keymap.lookup(key)
            if isinstance(found, Stroke) and self._is_down(found.keycode):
                xtest.fake_input(self._display, X.KeyRelease, found.keycode)
            return
        for keycode in reversed(keycodes):
            self._keycode_refs[keycode] -= 1
            if self._keycode_refs[keycode] <= 0:
                del self._keycode_refs[keycode]
                xtest.fake_input(self._display, X.KeyRelease, keycode)
            self.keymap.used(keycode)
            self.keymap.unhold(keycode)

    def _is_down(self, keycode: int) -> bool:
        keys = self._display.query_keymap()
        return bool(keys[keycode // 8] & (1 << (keycode % 8)))

    def _caps_lock(self) -> bool:
        mask = int(self._conn.root.query_pointer().mask)
        return bool(mask & X.LockMask)

    def type_text(self, text: str) -> None:
        """Type ``text`` verbatim: each character with the key (and Shift) that produces it.

        Characters no key produces are bound to spare keycodes in batches, as many as fit,
        before any character of the batch is typed (see :mod:`.keymap`). Modifiers this driver
        holds are let go while typing and pressed again afterwards, so that a held Ctrl does not
        turn ``c`` into a copy.
        """
        self.handle_events()
        plan = text.replace("\r\n", "\n")
        for char in plan:  # refuse untypable characters before typing anything
            char_keysyms(char)
        if not plan:
            return
        modifiers = self._held_modifier_keycodes()
        for keycode in modifiers:
            xtest.fake_input(self._display, X.KeyRelease, keycode)
        caps_lock = self._caps_lock()
        shift = self.keymap.shift_keycode()
        try:
            for batch, keysyms in self._batches(plan, caps_lock):
                bound = self.keymap.bind(keysyms)
                for found in batch:
                    if isinstance(found, Stroke):
                        self._tap(found, shift)
                    else:
                        self._tap(Stroke(bound[found], spare=True), shift)
                # Each batch goes out before the next one may rebind its keycodes.
                self._display.flush()
        finally:
            for keycode in modifiers:
                xtest.fake_input(self._display, X.KeyPress, keycode)
            self._conn.check()

    def _batches(self, text: str, caps_lock: bool) -> Iterator[tuple[list[Stroke | int], set[int]]]:
        """Split ``text`` into runs whose unmapped keysyms fit the spare keycodes at once."""
        capacity = max(1, self.keymap.capacity)
        batch: list[Stroke | int] = []
        keysyms: set[int] = set()
        for char in text:
            found = self.keymap.lookup_char(char, caps_lock)
            if not isinstance(found, Stroke) and found not in keysyms:
                if len(keysyms) == capacity:
                    yield batch, keysyms
                    batch, keysyms = [], set()
                keysyms.add(found)
            batch.append(found)
        if batch:
            yield batch, keysyms

    def _tap(self, stroke: Stroke, shift: int) -> None:
        if stroke.shift:
            xtest.fake_input(self._display, X.KeyPress, shift)
        xtest.fake_input(self._display, X.KeyPress, stroke.keycode)
        xtest.fake_input(self._display, X.KeyRelease, stroke.keycode)
        if stroke.shift:
            xtest.fake_input(self._display, X.KeyRelease, shift)
        self.keymap.used(stroke.keycode)

    def _held_modifier_keycodes(self) -> list[int]:
        modifiers = {
            code for index in range(8) for code in self.keymap.modifier_keycodes(index)
        } - set(self.keymap.modifier_keycodes(X.LockMapIndex))
        return [code for code in self._keycode_refs if code in modifiers]

    def restore_keymap(self, idle_s: float) -> bool:
        """Give back borrowed keycodes idle for ``idle_s`` that no held key uses; answers
        whether all of those are back."""
        self.handle_events()
        return self.keymap.restore(idle_s, wait=False)

    def release_all(self) -> None:
        """Release every key and button this driver holds, then restore the keymap."""
        for key in reversed(list(self._held_keys)):
            self._release_key(key)
        for number in sorted(self._held_buttons):
            xtest.fake_input(self._display, X.ButtonRelease, number)
        self._held_buttons.clear()
        self._conn.check()
        self.keymap.restore()


def _button_number(button: str) -> int:
    number = BUTTONS.get(button)
    if number is None:
        raise ValidationError(f"unknown button {button!r}: use one of {', '.join(sorted(BUTTONS))}")
    return number
