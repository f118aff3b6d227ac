"""Frame ids: the geometry of recent screenshots, so coordinates can be given in their pixels.

Each screenshot gets a ``frame_id``; an input action that names it gives its coordinates in
that screenshot's pixels (scaled, or of a region), and :meth:`FrameIds.native` maps them back
to the native screen.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

from remotehands.errors import NotFoundError
from remotehands.protocol.models import Bounds

__all__ = ["FRAMES_KEPT", "FrameIds"]

FRAMES_KEPT = 64
"""How many screenshots' geometry the agent remembers for ``frame_id`` coordinates."""


class FrameIds:
    """The last :data:`FRAMES_KEPT` screenshots of a device: where each lies, at what scale."""

    def __init__(self, kept: int = FRAMES_KEPT) -> None:
        self._kept = kept
        self._ids = itertools.count(1)
        # frame id -> (x, y of its top-left corner on the native screen, scale), newest last
        self._frames: OrderedDict[int, tuple[int, int, float]] = OrderedDict()

    def remember(self, region: Bounds | None, scale: float) -> int:
        """A new frame id for a screenshot of ``region`` (the whole screen: ``None``)."""
        frame_id = next(self._ids)
        self._frames[frame_id] = (region.x if region else 0, region.y if region else 0, scale)
        while len(self._frames) > self._kept:
            self._frames.popitem(last=False)
        return frame_id

    def native(self, frame_id: int | None, x: int, y: int) -> tuple[int, int]:
        """``(x, y)`` in pixels of screenshot ``frame_id`` as native screen pixels (as they are
        without a frame id)."""
        if frame_id is None:
            return x, y
        try:
            left, top, scale = self._frames[frame_id]
        except KeyError:
            raise NotFoundError(
                f"frame {frame_id} is not known (the agent keeps the last {self._kept} "
                "screenshots): take a new screenshot and use its frame_id"
            ) from None
        return left + int(x / scale), top + int(y / scale)
