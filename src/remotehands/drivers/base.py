"""The driver contract: a :class:`Driver` base class and one Protocol per capability.

A driver fronts one device. It declares the capabilities it has in ``capabilities``; the agent
checks that set before it calls a method, so an action outside it fails with ``unsupported``
before it reaches the device. Every method is a coroutine: drivers that talk to blocking
libraries (Xlib, mss) run them on a thread of their own.

Drivers only translate. Imaging (encoding, scaling, stability), clipboard slots, sequences and
locks live in the agent, above the driver, so that every driver gets them the same way.

Raw frames are ``numpy`` arrays of shape ``(height, width, 4)``, ``uint8``, in BGRX order (the
order X servers and mss hand out), so they can be encoded without a conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds, Button, ImageFormat, ScreenInfo, WindowInfo

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FrameArray = npt.NDArray[np.uint8]
else:
    FrameArray = object

__all__ = [
    "CAPABILITIES",
    "Apps",
    "Button",
    "Capability",
    "Clipboard",
    "Driver",
    "EncodedFrame",
    "EncodedScreen",
    "FrameArray",
    "Keyboard",
    "Mouse",
    "Screen",
    "Windows",
]

Capability = Literal[
    "screen", "keyboard", "mouse", "clipboard", "windows", "apps", "ocr", "power", "media",
    "switch", "audio",
]  # fmt: skip
CAPABILITIES: tuple[str, ...] = (
    "screen", "keyboard", "mouse", "clipboard", "windows", "apps", "ocr", "power", "media",
    "switch", "audio",
)  # fmt: skip


@runtime_checkable
class Screen(Protocol):
    """See the screen."""

    async def screens(self) -> list[ScreenInfo]:
        """Every screen, ``id`` 0 first; ids are stable while the device runs."""
        ...

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        """A BGRX frame of the screen, or of ``region`` in that screen's coordinates.

        The returned array may be a view of a buffer the driver reuses on the next call: copy it
        if you keep it past the next ``grab``.
        """
        ...

    async def cursor_position(self) -> tuple[int, int]:
        """The pointer's position in virtual-desktop pixels."""
        ...


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A whole-screen frame as the device itself encoded it (a KVM streamer's JPEG).

    The agent passes it on as it is when a request asks for nothing the pixels would be needed
    for (no region, scale, cursor ring or stability wait, the same format), so a KVM snapshot is
    never decoded and encoded again.
    """

    data: bytes
    format: ImageFormat
    width: int
    height: int


@runtime_checkable
class EncodedScreen(Protocol):
    """A screen that can also hand out frames it encoded itself (optional, beside Screen)."""

    async def snapshot(self, screen_id: int = 0) -> EncodedFrame | None:
        """The device's own encoded frame of the whole screen, or ``None`` when it has none to
        give right now (the agent then grabs raw pixels with :meth:`Screen.grab`)."""
        ...


@runtime_checkable
class Mouse(Protocol):
    """Move and click the pointer. Coordinates are native pixels of the virtual desktop."""

    async def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)``."""
        ...

    async def button(self, button: Button, down: bool) -> None:
        """Press (``down=True``) or release a button where the pointer is."""
        ...

    async def click(self, button: Button = "left", count: int = 1) -> None:
        """Click ``count`` times where the pointer is."""
        ...

    async def scroll(self, delta_x: int, delta_y: int) -> None:
        """Scroll where the pointer is: positive ``delta_y`` scrolls down, positive ``delta_x``
        scrolls right, one unit a wheel notch."""
        ...


@runtime_checkable
class Keyboard(Protocol):
    """Type and press keys."""

    async def key(self, key: Key, down: bool) -> None:
        """Press or release one key; a pressed key stays held until released."""
        ...

    async def type_text(self, text: str, delay_s: float = 0.0) -> None:
        """Type ``text`` verbatim, any Unicode, waiting ``delay_s`` between characters."""
        ...

    async def release_all(self) -> None:
        """Release every key and button this driver holds down."""
        ...


@runtime_checkable
class Clipboard(Protocol):
    """The device's text clipboard."""

    async def get_text(self) -> str:
        """The clipboard's text, ``""`` when it is empty or holds no text."""
        ...

    async def set_text(self, text: str) -> None:
        """Own the clipboard with ``text``."""
        ...


@runtime_checkable
class Windows(Protocol):
    """Top-level windows."""

    async def list_windows(self) -> list[WindowInfo]:
        """Every managed top-level window, in stacking order, bottom first."""
        ...

    async def focus_window(self, window_id: int) -> None:
        """Raise and focus a window; :class:`~remotehands.errors.NotFoundError` if unknown."""
        ...

    async def move_window(self, window_id: int, bounds: Bounds) -> Bounds:
        """Move and resize a window; answers the bounds it got."""
        ...

    async def close_window(self, window_id: int) -> None:
        """Ask a window to close, as its close button would."""
        ...


@runtime_checkable
class Apps(Protocol):
    """Start and find applications."""

    async def open_app(self, path: str, args: Sequence[str]) -> int:
        """Start a program detached from the agent; answers its pid."""
        ...

    async def running(self, name: str) -> list[int]:
        """Pids of processes whose executable name is ``name``."""
        ...


class Driver:
    """Base of every driver. Subclasses set ``kind`` and ``capabilities`` and implement the
    capability Protocols named there.

    A driver is an async context manager: ``start`` opens connections, ``close`` releases
    held keys and buttons and frees what it holds.
    """

    kind: str = "base"
    capabilities: frozenset[str] = frozenset()

    async def start(self) -> None:
        """Open connections; called once before any action."""

    async def close(self) -> None:
        """Release held input and free resources; safe to call twice."""

    async def __aenter__(self) -> Driver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def has(self, capability: str) -> bool:
        """Whether this driver declares ``capability``."""
        return capability in self.capabilities
