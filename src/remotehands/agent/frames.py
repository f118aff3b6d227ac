"""Frame ids: the geometry of recent screenshots, so coordinates can be given in their pixels.

Each screenshot gets a ``frame_id``; an input action that names it gives its coordinates in
that screenshot's pixels (scaled, or of a region), and :meth:`FrameIds.native` maps them back
to the native screen. A frame also keeps the size its screen had when it was taken: once the
screen's resolution changed, its pixels no longer say where anything is, and
:meth:`FrameIds.native` refuses it (the caller reads the screen's size now, only for actions
that name a frame).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

from remotehands.drivers.base import Screen
from remotehands.errors import NotFoundError, ValidationError
from remotehands.protocol.models import Bounds

__all__ = ["FRAMES_KEPT", "Frame", "FrameIds", "to_native"]

FRAMES_KEPT = 64
"""How many screenshots' geometry the agent remembers for ``frame_id`` coordinates."""


@dataclass(frozen=True, slots=True)
class Frame:
    """Where one screenshot lies on the native screen, at what scale, and the size of its
    screen when it was taken."""

    left: int
    top: int
    scale: float
    screen_id: int
    screen_size: tuple[int, int]


class FrameIds:
    """The last :data:`FRAMES_KEPT` screenshots of a device: where each lies, at what scale."""

    def __init__(self, kept: int = FRAMES_KEPT) -> None:
        self._kept = kept
        self._ids = itertools.count(1)
        self._frames: OrderedDict[int, Frame] = OrderedDict()  # newest last

    def remember(
        self,
        region: Bounds | None,
        scale: float,
        screen_size: tuple[int, int],
        screen_id: int = 0,
    ) -> int:
        """A new frame id for a screenshot of ``region`` (the whole screen: ``None``) of screen
        ``screen_id``, which was ``screen_size`` (width, height) native pixels."""
        frame_id = next(self._ids)
        self._frames[frame_id] = Frame(
            region.x if region else 0, region.y if region else 0, scale, screen_id, screen_size
        )
        while len(self._frames) > self._kept:
            self._frames.popitem(last=False)
        return frame_id

    def frame(self, frame_id: int) -> Frame:
        """The geometry of screenshot ``frame_id``; :class:`NotFoundError` when the agent no
        longer (or never) knew it."""
        try:
            return self._frames[frame_id]
        except KeyError:
            raise NotFoundError(
                f"frame {frame_id} is not known (the agent keeps the last {self._kept} "
                "screenshots): take a new screenshot and use its frame_id"
            ) from None

    def native(
        self, frame_id: int | None, x: int, y: int, screen_size: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """``(x, y)`` in pixels of screenshot ``frame_id`` as native screen pixels (as they are
        without a frame id). ``screen_size`` is the size of the frame's screen now: a frame
        taken at another size is refused with :class:`ValidationError`."""
        if frame_id is None:
            return x, y
        frame = self.frame(frame_id)
        if screen_size is not None and screen_size != frame.screen_size:
            (was_w, was_h), (now_w, now_h) = frame.screen_size, screen_size
            raise ValidationError(
                f"frame {frame_id} was taken when the screen was {was_w}x{was_h}, and it is "
                f"{now_w}x{now_h} now (its resolution changed): take a new screenshot and use "
                "its frame_id"
            )
        return frame.left + int(x / frame.scale), frame.top + int(y / frame.scale)


async def to_native(
    frames: FrameIds, screen: Screen, frame_id: int | None, x: int, y: int
) -> tuple[int, int]:
    """:meth:`FrameIds.native` with the size of the frame's screen read from the device now:
    a frame taken before a resolution change is refused. Without a frame id nothing is read."""
    if frame_id is None:
        return x, y
    frame = frames.frame(frame_id)
    now = next((s for s in await screen.screens() if s.id == frame.screen_id), None)
    if now is None:
        raise ValidationError(
            f"frame {frame_id} shows screen {frame.screen_id}, which the device no longer has: "
            "take a new screenshot and use its frame_id"
        )
    return frames.native(frame_id, x, y, (now.width, now.height))
