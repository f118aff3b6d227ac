"""H.264 frames for live views: PyAV's libx264, tuned for a screen watched live.

ultrafast + zerolatency (one packet out for each frame in, no lookahead, no B-frames), yuv420p,
the constrained baseline profile (what WebCodecs' ``VideoDecoder`` and every hardware decoder
take), Annex B byte stream with the SPS and PPS in front of every IDR frame, so a decoder can
start at any key frame without a separate description. A frame is encoded only when the screen
changed (the :class:`~remotehands.agent.framesource.FrameSource` decides); a terminal being typed
in costs about a hundred bytes a frame after the first key frame (PERFORMANCE.md).

Only the changed rectangle is converted to YUV: the encoder keeps the last picture it encoded and
converts the rectangle the frame source found (rounded out to even pixels, so that chroma
blocks stay whole) into it, a fraction of a millisecond for a keystroke where converting the
whole 1080p frame costs 15-25 ms; a whole frame is converted for the first frame and for a key
frame request.

While the whole screen moves (a scrolling terminal, a video), frames are encoded at half the
width and height: a quarter of the pixels to convert, encode, send and decode (at 1080p: about
6 ms a frame instead of 23 here, and the browser decodes a quarter of the pixels too), so that
a 2-core machine keeps 30 frames a second. Moving means: a change over at least
:data:`MOTION_SHARE` of the screen, within :data:`MOTION_GAP_S` of the one before. A single
change, however big (a page turned), stays sharp. When no such change came for
:data:`SETTLE_S` the encoder is back at full resolution with an IDR frame: from the next changed
frame, or, if nothing changes any more, from :meth:`H264Encoder.settle`, which the frame source
calls on an unchanged capture once :attr:`H264Encoder.settle_due` has passed. Text is sharp
again once the screen is still. The frame header keeps the screen's own size: a viewer scales the
picture it decodes to it (a decoder takes the new size from the SPS of the IDR frame); each size
has its own libx264 context, kept, so that a switch costs an IDR frame but no encoder setup.

An encoder is stateful: each consumer has its own (its :attr:`H264Encoder.key` is its own), so
its first frame is an IDR frame, and :meth:`H264Encoder.request_key` makes the next one an IDR
(a viewer joined or its decoder failed). Sizes must be even for 4:2:0: an odd last column or row
is left out.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from remotehands.agent.framesource import Encoded
from remotehands.drivers.base import FrameArray
from remotehands.errors import DeviceError
from remotehands.protocol.models import Bounds

__all__ = [
    "MOTION_GAP_S",
    "MOTION_SHARE",
    "REDUCE_FROM",
    "SETTLE_S",
    "H264Encoder",
    "crf_for_quality",
]

_TIME_BASE = Fraction(1, 1000)
_KEYINT = 100_000
"""Frames between IDR frames unless asked for one: practically never. Frames come only when the
screen changes, so a time-based interval would be meaningless; a viewer that needs a key frame
asks."""

_SWSCALE_THREADS = min(4, os.cpu_count() or 1)
"""Threads that convert a picture to yuv420p: a whole 1080p frame (a scrolling terminal) takes
swscale 9.7 ms on one thread and 5.4 ms on two, here."""
_SMALL = 256 * 256 * 4
"""A changed rectangle up to this many bytes is converted on one thread (threads cost more)."""


MOTION_SHARE = 0.1
"""A change over at least this share of the screen's area is motion. A scrolling terminal is
caught between its repaints: its changed rectangle is often a fifth of the screen, rarely all of
it; a key typed is a thousandth."""
MOTION_GAP_S = 0.25
"""Two such changes at most this far apart: the screen is moving; frames go at half size."""
SETTLE_S = 0.3
"""No such change for this long: the screen has settled; frames go at full size again."""
REDUCE_FROM = 1280 * 720
"""Only a screen of at least this many pixels is reduced while it moves: a smaller one is cheap
enough at full size."""


@dataclass(slots=True)
class _Stream:
    """One libx264 context, for one picture size."""

    context: av.VideoCodecContext
    started: float
    last_pts: int = -1
    want_key: bool = True


def crf_for_quality(quality: int) -> int:
    """libx264's constant rate factor for a JPEG-like ``quality`` (1..100): 75 gives 23,
    x264's default; 100 gives 13, 1 gives 51 (the worst)."""
    return max(0, min(51, round(53 - quality * 0.4)))


class H264Encoder:
    """One consumer's H.264 encoder; see the module docstring. :meth:`encode` and
    :meth:`settle` run in a worker thread, one call at a time.

    ``reduce_from``: the fewest pixels a screen has for it to be encoded at half size while it
    moves (0: always, ``None``: never). ``clock``: seconds, monotonic (what the motion and
    settle times are measured with)."""

    def __init__(
        self,
        quality: int = 75,
        *,
        rate: float = 30.0,
        reduce_from: int | None = REDUCE_FROM,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quality = quality
        self.rate = rate
        self.reduce_from = reduce_from
        self._clock = clock
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._full: tuple[int, int] | None = None
        """The screen's size (even), as last encoded."""
        self._reduced = False
        """Whether frames go at half size (the screen moves)."""
        self._last_motion = -math.inf
        """When the last change over :data:`MOTION_SHARE` of the screen was encoded."""
        self._want_key = True
        self._picture: av.VideoFrame | None = None
        """The last full-size picture encoded (yuv420p), updated where the screen changed."""
        self._planes: list[npt.NDArray[np.uint8]] = []
        self._bgra: av.VideoFrame | None = None
        """A whole frame's BGRX pixels go through this one buffer: a fresh 8 MiB buffer a frame
        costs more in page faults than the copy (PERFORMANCE.md)."""
        self._bgra_view: npt.NDArray[np.uint8] | None = None
        self._reformatter = VideoReformatter()
        self.key_frames = 0
        """IDR frames produced so far."""
        self.reduced_frames = 0
        """Frames encoded at half size so far."""

    @property
    def format(self) -> str:
        return "h264"

    @property
    def key(self) -> Hashable:
        return ("h264", id(self))

    @property
    def reduced(self) -> bool:
        """Whether the last frame went at half size (the screen was moving)."""
        return self._reduced

    @property
    def settle_due(self) -> float | None:
        """When (on :attr:`clock`'s time) :meth:`settle` would bring a still screen back to full
        size, or ``None``: frames go at full size already."""
        return self._last_motion + SETTLE_S if self._reduced else None

    def request_key(self) -> None:
        """Make the next frame an IDR frame (with its SPS and PPS)."""
        self._want_key = True

    def _open(self, width: int, height: int) -> _Stream:
        try:
            context = av.CodecContext.create("libx264", "w")
        except (av.FFmpegError, ValueError) as err:
            raise DeviceError(f"H.264 is not available on this agent (libx264): {err}") from err
        assert isinstance(context, av.VideoCodecContext)
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.time_base = _TIME_BASE
        context.framerate = Fraction(round(self.rate * 1000), 1000)
        context.gop_size = _KEYINT
        context.max_b_frames = 0
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "crf": str(crf_for_quality(self.quality)),
            # A frame forced to I is an IDR frame, where a decoder can start.
            "forced-idr": "1",
            # No scene-cut keyframes: a viewer asks when it needs one. The colour matrix is
            # swscale's (BT.601), said in the SPS: a browser assumes BT.709 for a stream that
            # says nothing, and shows #c03020 as #cd3e20.
            "x264-params": "scenecut=0:repeat-headers=1:colorprim=bt709:transfer=bt709"
            ":colormatrix=smpte170m",
        }
        context.open()
        return _Stream(context, self._clock())

    def encode(self, frame: FrameArray, changed: Bounds) -> Encoded:
        """``frame`` (BGRX) as H.264 access units, Annex B; ``key`` for an IDR frame.
        ``changed``: where ``frame`` differs from the one encoded before."""
        height, width = frame.shape[:2]
        full = (width - width % 2, height - height % 2)
        if full != self._full:
            # A new screen size: every context is for the old one.
            self._streams.clear()
            self._full, self._reduced, self._last_motion = full, False, -math.inf
        now = self._clock()
        big = changed.width * changed.height >= MOTION_SHARE * full[0] * full[1]
        # A key frame asked for at full size (a first frame, a viewer joining) is whole because
        # it was asked for, not because the screen moves.
        if big and not (self._want_key and not self._reduced):
            moving = now - self._last_motion <= MOTION_GAP_S
            self._last_motion = now
            if moving and not self._reduced and self._reducible(full):
                self._reduced = True
                self._want_key = True  # the half-size context starts with an IDR
        elif self._reduced and now - self._last_motion >= SETTLE_S:
            self._reduced = False
            self._want_key = True
        return self._encode(frame[: full[1], : full[0]], changed)

    def settle(self, frame: FrameArray) -> Encoded | None:
        """``frame`` (unchanged since the last one) again, at full size as an IDR frame, if the
        last frame went at half size: the screen has settled (:attr:`settle_due`), its text is
        shown sharp. ``None`` when the last frame went at full size already."""
        if not self._reduced:
            return None
        self._reduced = False
        self._want_key = True
        height, width = frame.shape[:2]
        whole = Bounds(x=0, y=0, width=width, height=height)
        return self._encode(frame[: height - height % 2, : width - width % 2], whole)

    def _reducible(self, full: tuple[int, int]) -> bool:
        return self.reduce_from is not None and full[0] * full[1] >= max(self.reduce_from, 16)

    def _encode(self, pixels: FrameArray, changed: Bounds) -> Encoded:
        height, width = pixels.shape[:2]
        size = ((width // 2) & ~1, (height // 2) & ~1) if self._reduced else (width, height)
        stream = self._streams.get(size)
        if stream is None:
            stream = self._streams[size] = self._open(*size)
        # A new context, or one that had no frames while the other size had: an IDR first.
        key = self._want_key or stream.want_key
        self._want_key = stream.want_key = False
        if key:
            # The other size's context is behind from now: it starts at an IDR when used again.
            for other, kept in self._streams.items():
                kept.want_key = kept.want_key or other != size
        if self._reduced:
            picture = self._half_yuv(pixels, size)
            # The full-size picture goes stale: it is converted whole when it is used again.
            self._picture = None
        else:
            picture = self._convert(pixels, changed, whole=key)
        # Real time as the timestamp (ms), so that rate control sees the real frame rate;
        # strictly increasing, as the encoder requires.
        pts = max(stream.last_pts + 1, round((self._clock() - stream.started) * 1000))
        stream.last_pts = pts
        picture.pts = pts
        picture.time_base = _TIME_BASE
        # The picture is reused: its type must be set every time, not only for a key frame.
        picture.pict_type = PictureType.I if key else PictureType.NONE
        try:
            packets = stream.context.encode(picture)
        except av.FFmpegError as err:
            self._streams.clear()  # start afresh (and with a key frame) next time
            self._picture = None
            raise DeviceError(f"H.264 encoding failed: {err}") from err
        data = b"".join(bytes(packet) for packet in packets)
        is_key = any(packet.is_keyframe for packet in packets)
        self.key_frames += is_key
        self.reduced_frames += self._reduced
        return Encoded(data, key=is_key)

    def _half_yuv(self, pixels: FrameArray, size: tuple[int, int]) -> av.VideoFrame:
        """All of ``pixels`` as yuv420p at ``size`` (about half): swscale's fast bilinear
        scaling, a third of the time of its area averaging, and the picture is moving anyway."""
        bgra = self._bgra_frame(pixels)
        return self._reformatter.reformat(bgra, width=size[0], height=size[1], format="yuv420p",
                                          interpolation=Interpolation.FAST_BILINEAR)  # fmt: skip

    def _convert(self, pixels: FrameArray, changed: Bounds, *, whole: bool) -> av.VideoFrame:
        """The picture to encode: ``pixels`` converted to yuv420p, all of it (``whole``, or
        the first time), else only ``changed`` into the last picture."""
        height, width = pixels.shape[:2]
        picture = self._picture
        if whole or picture is None or (picture.width, picture.height) != (width, height):
            picture = self._reformatter.reformat(self._bgra_frame(pixels), format="yuv420p",
                                                 threads=_SWSCALE_THREADS)  # fmt: skip
            self._picture = picture
            self._planes = [_plane_view(plane) for plane in picture.planes]
            return picture
        # Rounded out to even pixels: a 2x2 chroma block is converted whole or not at all.
        left, top = changed.x & ~1, changed.y & ~1
        right = min(width, (changed.x + changed.width + 1) & ~1)
        bottom = min(height, (changed.y + changed.height + 1) & ~1)
        if right <= left or bottom <= top:
            return picture
        patch = _yuv(pixels[top:bottom, left:right])
        for index, plane in enumerate(patch.planes):
            shift = 0 if index == 0 else 1
            source = _plane_view(plane)
            self._planes[index][top >> shift : bottom >> shift, left >> shift : right >> shift] = (
                source
            )
        return picture

    def _bgra_frame(self, pixels: FrameArray) -> av.VideoFrame:
        """All of ``pixels`` as a BGRA picture: over their own memory when they are contiguous
        (the frame source's kept frame always is; swscale only reads it, during this call), else
        through the reused BGRA buffer."""
        if pixels.flags.c_contiguous:
            return av.VideoFrame.from_numpy_buffer(pixels, format="bgra")
        height, width = pixels.shape[:2]
        if self._bgra is None or (self._bgra.width, self._bgra.height) != (width, height):
            self._bgra = av.VideoFrame(width, height, "bgra")
            plane = self._bgra.planes[0]
            rows = _plane_view(plane, plane.width * 4)
            self._bgra_view = rows.reshape(height, width, 4)
        view = self._bgra_view
        if view is None:  # set with _bgra, always
            raise DeviceError("H.264: the frame buffer was lost")
        np.copyto(view, pixels)
        return self._bgra


def _yuv(pixels: FrameArray) -> av.VideoFrame:
    """BGRX ``pixels`` as a yuv420p picture (swscale)."""
    if not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels)
    picture = av.VideoFrame.from_ndarray(pixels, format="bgra")
    return picture.reformat(
        format="yuv420p", threads=_SWSCALE_THREADS if pixels.size > _SMALL else 1
    )


def _plane_view(
    plane: av.video.plane.VideoPlane, row_bytes: int | None = None
) -> npt.NDArray[np.uint8]:
    """A writable array over ``plane``'s rows of ``row_bytes`` (its width: one byte a pixel)
    bytes; the rows are ``line_size`` apart."""
    # PyAV's planes are writable buffers; its type stubs do not say so.
    data: npt.NDArray[np.uint8] = np.frombuffer(plane, np.uint8)  # type: ignore[call-overload]
    rows = data[: plane.height * plane.line_size]
    return rows.reshape(plane.height, plane.line_size)[:, : row_bytes or plane.width]
