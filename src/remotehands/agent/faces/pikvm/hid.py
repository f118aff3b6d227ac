"""kvmd's HID on a remotehands device: its key names, its press semantics, its mouse ranges.

Every event becomes an action of the vocabulary run by the device's
:class:`~remotehands.agent.dispatch.Dispatcher` (``keyboard.down``/``up``, ``keyboard.type``,
``mouse.move``, ``mouse.down``/``up``/``click``, ``mouse.scroll``), so locks, the action log
and audit apply to PiKVM clients as to every other.

kvmd's semantics kept here: a key pressed with ``finish`` is released at once unless it is one
of the nine keys that stay held (the Control/Shift/Alt/Meta keys and PrintScreen); absolute
moves are -32768..32767 on both axes with (0, 0) at the centre, clamped, and map to the screen's
pixels as the web UI maps pixels to them; deltas are clamped to -127..127; a positive wheel
``y`` scrolls up. ``up``/``down`` mouse buttons (the side buttons) are accepted and do nothing:
the vocabulary's pointer has no side buttons.

A deliberate difference: kvmd acts on relative moves only while its mouse is relative and on
absolute moves only while it is absolute; this face acts on both (the desktop pointer is both).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from remotehands.agent.dispatch import Dispatcher
from remotehands.drivers.pikvm.keymap import (
    EVDEV_TO_BUTTON,
    EVDEV_TO_WEB,
    HELD_KEYS,
    MOUSE_BUTTONS,
    MOVE_MAX,
    MOVE_MIN,
    WEB_KEYS,
    clamp_delta,
    clamp_move,
    from_kvmd,
    to_kvmd,
)
from remotehands.protocol.encoding import jsonable

__all__ = [
    "EVDEV_TO_BUTTON",
    "EVDEV_TO_WEB",
    "HELD_KEYS",
    "MOUSE_BUTTONS",
    "MOVE_MAX",
    "MOVE_MIN",
    "WEB_KEYS",
    "Hid",
    "clamp_delta",
    "clamp_move",
    "from_kvmd",
    "to_kvmd",
]

log = logging.getLogger(__name__)


_POINTER: Final = frozenset({"left", "right", "middle"})


class Hid:
    """The HID of one device as kvmd presents it."""

    SCREEN_TTL_S: Final = 1.0

    def __init__(self, dispatcher: Dispatcher, *, clock: Any = time.monotonic) -> None:
        self.dispatcher = dispatcher
        self._clock = clock
        self.last_event = clock()
        self.held_keys: list[str] = []
        self.held_buttons: list[str] = []
        self.jiggler = False
        self.mouse_output = "usb"
        self._screen: tuple[float, tuple[int, int, int, int]] | None = None

    def state(self) -> dict[str, Any]:
        """The ``/api/hid`` object (the WS ``hid`` event)."""
        return {
            "enabled": True,
            "online": True,
            "busy": False,
            "connected": None,
            "keyboard": {
                "online": True,
                "leds": {"caps": False, "num": False, "scroll": False},
                "outputs": {"active": "", "available": []},
            },
            "mouse": {
                "online": True,
                "absolute": self.mouse_output != "usb_rel",
                "outputs": {"active": self.mouse_output, "available": ["usb", "usb_rel"]},
            },
            "jiggler": {"enabled": self.jiggler, "active": False, "interval": 60},
        }

    def inactivity(self) -> int:
        """Whole seconds since the last HID event."""
        return int(self._clock() - self.last_event)

    def _touch(self) -> None:
        self.last_event = self._clock()

    async def _run(self, action: str, params: dict[str, Any] | None = None) -> Any:
        return await self.dispatcher.run(action, params or {})

    async def key(self, name: str, state: bool, finish: bool = False) -> None:
        """Press or release a key (by kvmd name); a press with ``finish`` releases at once
        unless the key is one of :data:`HELD_KEYS`."""
        self._touch()
        if state:
            await self._run("keyboard.down", {"key": name})
            if name not in self.held_keys:
                self.held_keys.append(name)
            if finish and name not in HELD_KEYS:
                await self._release(name)
        else:
            await self._release(name)

    async def _release(self, name: str) -> None:
        await self._run("keyboard.up", {"key": name})
        if name in self.held_keys:
            self.held_keys.remove(name)

    async def shortcut(self, names: Sequence[str]) -> None:
        """Press the keys in order and release them in reverse, 50 ms before each event, as
        one sequence under the device lock."""
        self._touch()
        steps: list[dict[str, Any]] = []
        for kind, order in (("keyboard.down", names), ("keyboard.up", list(reversed(names)))):
            for name in order:
                steps += [{"type": "sleep", "ms": 50}, {"type": kind, "key": name}]
        await self._run("sequence", {"steps": steps})

    async def print(self, text: str, delay_s: float) -> None:
        """Type ``text``; ``delay_s`` is kvmd's pause before every press and every release."""
        self._touch()
        if not text:
            return
        duration_ms = min(int(len(text) * 2 * delay_s * 1000), 600_000)
        await self._run("keyboard.type", {"text": text, "duration_ms": duration_ms})

    async def mouse_button(self, name: str, state: bool | None) -> None:
        """Press (``True``), release (``False``) or click (``None``) a button."""
        self._touch()
        if name not in _POINTER:
            return
        if state is None:
            await self._run("mouse.click", {"button": name})
        elif state:
            await self._run("mouse.down", {"button": name})
            if name not in self.held_buttons:
                self.held_buttons.append(name)
        else:
            await self._run("mouse.up", {"button": name})
            if name in self.held_buttons:
                self.held_buttons.remove(name)

    async def screen(self) -> tuple[int, int, int, int]:
        """Screen 0's ``x, y, width, height``, read again at most once a second."""
        now = self._clock()
        if self._screen is None or now - self._screen[0] > self.SCREEN_TTL_S:
            screens = jsonable(await self._run("screens"))["screens"]
            first = screens[0]
            box = (first["x"], first["y"], first["width"], first["height"])
            self._screen = (now, box)
        return self._screen[1]

    async def move(self, to_x: int, to_y: int) -> None:
        """An absolute move, -32768..32767 on both axes (clamped)."""
        self._touch()
        x, y, width, height = await self.screen()
        await self._run(
            "mouse.move", {"x": x + from_kvmd(to_x, width), "y": y + from_kvmd(to_y, height)}
        )

    async def relative(self, deltas: Iterable[tuple[int, int]], squash: bool = False) -> None:
        """Relative moves (each delta clamped to -127..127), kept on the screen."""
        self._touch()
        dx, dy = _sum(deltas)
        if not dx and not dy:
            return
        x0, y0, width, height = await self.screen()
        here = await self._run("screenshot.cursor")
        x = min(max(here["x"] + dx, x0), x0 + width - 1)
        y = min(max(here["y"] + dy, y0), y0 + height - 1)
        await self._run("mouse.move", {"x": x, "y": y})

    async def wheel(self, deltas: Iterable[tuple[int, int]], squash: bool = False) -> None:
        """Wheel notches; a positive ``y`` scrolls up (the vocabulary's positive is down)."""
        self._touch()
        dx, dy = _sum(deltas)
        if dx or dy:
            await self._run("mouse.scroll", {"delta_x": dx, "delta_y": -dy})

    async def reset(self) -> None:
        """Release every key and button held through this face."""
        for name in list(self.held_keys):
            await self._release(name)
        for button in list(self.held_buttons):
            await self.mouse_button(button, False)


def _sum(deltas: Iterable[tuple[int, int]]) -> tuple[int, int]:
    # the desktop pointer takes a whole move at once: squashed or not, the sum lands the same
    dx = dy = 0
    for x, y in deltas:
        dx += clamp_delta(x)
        dy += clamp_delta(y)
    return dx, dy


async def quietly(what: str, step: Any) -> None:
    """Run one HID event of a socket: kvmd drops what fails there, it never answers an error."""
    try:
        await step
    except Exception as err:  # noqa: BLE001 -- a socket's bad input is dropped, as kvmd does
        log.debug("pikvm face: %s dropped: %s", what, err)
