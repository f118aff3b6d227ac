"""Screen capture with mss over MIT-SHM, into one frame buffer that is reused.

mss (10.2+) captures through ``XShmGetImage`` into a shared-memory segment and then copies the
pixels into a fresh ``bytearray`` for every shot. A fresh 8 MiB buffer costs about 9 ms of page
faults on first touch (PERFORMANCE.md), and glibc stops recycling buffers above 32 MiB (a 4K
screen), so once mss has shown that MIT-SHM works the grabber asks the server for the image in
mss's segment itself and copies it straight into its own buffer. Any surprise on that path turns
it off for good and captures the documented way.

Everything here runs on the driver's X thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mss
import numpy as np

from remotehands.errors import NotFoundError, ValidationError
from remotehands.protocol.models import Bounds, ScreenInfo

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["ScreenGrabber"]


class ScreenGrabber:
    """Captures the screens of one X display as BGRX ``numpy`` arrays.

    Screens are the RandR monitors mss reports (one per monitor; the whole root when RandR
    reports none), numbered from 0 in that order and read once, at construction.
    """

    def __init__(self, display: str) -> None:
        try:
            self._mss: Any = mss.MSS(backend="xshmgetimage", display=display)
        except TypeError:  # mss < 10.2 has one Xlib backend and no ``backend`` argument
            self._mss = mss.MSS(display=display)
        monitors = self._mss.monitors
        self._root: dict[str, int] = monitors[0]
        per_monitor = monitors[1:] or monitors[:1]
        self._screens = [
            ScreenInfo(
                id=index,
                x=int(mon["left"]),
                y=int(mon["top"]),
                width=int(mon["width"]),
                height=int(mon["height"]),
            )
            for index, mon in enumerate(per_monitor)
        ]
        # One buffer the size of the whole root; every frame is a view of its start.
        self._buffer: npt.NDArray[np.uint8] = np.empty(
            int(self._root["width"]) * int(self._root["height"]) * 4, dtype=np.uint8
        )
        self._direct = _DirectShm.probe(self._mss)
        self.performance_status: list[str] = []

    def screens(self) -> list[ScreenInfo]:
        """Every screen, id 0 first."""
        return list(self._screens)

    def screen(self, screen_id: int) -> ScreenInfo:
        """The screen with ``screen_id``; :class:`NotFoundError` when there is none."""
        if not 0 <= screen_id < len(self._screens):
            raise NotFoundError(
                f"no screen {screen_id}: this display has screens "
                f"{', '.join(str(s.id) for s in self._screens)}"
            )
        return self._screens[screen_id]

    def grab(self, screen_id: int = 0, region: Bounds | None = None) -> npt.NDArray[np.uint8]:
        """A ``(height, width, 4)`` BGRX view of the frame buffer, valid until the next grab.

        ``region`` is in the screen's own coordinates and must lie inside it.
        """
        screen = self.screen(screen_id)
        if region is None:
            left, top, width, height = screen.x, screen.y, screen.width, screen.height
        else:
            if (
                region.x < 0
                or region.y < 0
                or region.x + region.width > screen.width
                or region.y + region.height > screen.height
            ):
                raise ValidationError(
                    f"region x={region.x} y={region.y} {region.width}x{region.height} is not "
                    f"inside screen {screen_id}, which is {screen.width}x{screen.height}: keep "
                    f"0 <= x, x + width <= {screen.width}, 0 <= y, y + height <= {screen.height}"
                )
            left, top = screen.x + region.x, screen.y + region.y
            width, height = region.width, region.height
        frame = self._buffer[: width * height * 4].reshape(height, width, 4)
        if self._direct is not None:
            if self._direct.grab_into(frame, left, top):
                return frame
            self.performance_status.append("direct MIT-SHM capture failed; using mss.grab")
            self._direct = None
        shot = self._mss.grab({"left": left, "top": top, "width": width, "height": height})
        np.copyto(frame, np.frombuffer(shot.raw, dtype=np.uint8).reshape(height, width, 4))
        if self._direct is None and not self.performance_status:
            # mss only knows MIT-SHM works after its first capture; try the direct path again.
            self._direct = _DirectShm.probe(self._mss)
        return frame

    @property
    def root_size(self) -> tuple[int, int]:
        """The desktop's size when the screens were read."""
        return int(self._root["width"]), int(self._root["height"])

    def close(self) -> None:
        """Close mss's X connection."""
        self._direct = None
        self._mss.close()


class _DirectShm:
    """``XShmGetImage`` into the segment mss has attached, read without an extra allocation.

    This relies on attributes of mss's ``xshmgetimage`` backend (10.2); :meth:`probe` checks
    each of them and answers None when they are not what this code expects.
    """

    def __init__(self, impl: Any, xcb: Any, all_planes: int) -> None:
        self._impl = impl
        self._xcb = xcb
        self._all_planes = all_planes

    @staticmethod
    def probe(sct: Any) -> _DirectShm | None:
        try:
            from mss.linux import xcb
            from mss.linux.base import ALL_PLANES
            from mss.linux.xshmgetimage import MSSImplXShmGetImage, ShmStatus
        except ImportError:
            return None
        impl = getattr(sct, "_impl", None)
        if not isinstance(impl, MSSImplXShmGetImage):
            return None
        if getattr(impl, "shm_status", None) is not ShmStatus.AVAILABLE:
            return None
        if not all(hasattr(impl, name) for name in ("conn", "drawable", "_buf", "_shmseg")):
            return None
        return _DirectShm(impl, xcb, int(ALL_PLANES))

    def grab_into(self, frame: npt.NDArray[np.uint8], left: int, top: int) -> bool:
        """Fill ``frame`` with the screen at ``(left, top)``; False when this path failed."""
        impl = self._impl
        height, width = int(frame.shape[0]), int(frame.shape[1])
        size = width * height * 4
        buf = impl._buf
        if impl.conn is None or buf is None or impl._shmseg is None or size > len(buf):
            return False
        try:
            reply = self._xcb.shm_get_image(
                impl.conn,
                impl.drawable,
                left,
                top,
                width,
                height,
                self._all_planes,
                self._xcb.ImageFormat.ZPixmap,
                impl._shmseg,
                0,
            )
            if reply.depth != impl.drawable_depth:
                return False
            source = np.frombuffer(buf, dtype=np.uint8, count=size)
            try:
                np.copyto(frame, source.reshape(height, width, 4))
            finally:
                # Drop the export at once: mss cannot close its mmap while a view is alive.
                del source
        except Exception:  # noqa: BLE001 - any failure means: use mss's documented path
            return False
        return True
