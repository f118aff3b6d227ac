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

An encoder is stateful: each consumer has its own (its :attr:`H264Encoder.key` is its own), so
its first frame is an IDR frame, and :meth:`H264Encoder.request_key` makes the next one an IDR
(a viewer joined or its decoder failed). Sizes must be even for 4:2:0: an odd last column or row
is left out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from remotehands.agent.framesource import Encoded
from remotehands.drivers.base import FrameArray
from remotehands.errors import DeviceError
from remotehands.protocol.models import Bounds

__all__ = ["H264Encoder", "crf_for_quality"]

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


def crf_for_quality(quality: int) -> int:
    """libx264's constant rate factor for a JPEG-like ``quality`` (1..100): 75 gives 23,
    x264's default; 100 gives 13, 1 gives 51 (the worst)."""
    return max(0, min(51, round(53 - quality * 0.4)))


class H264Encoder:
    """One consumer's H.264 encoder; see the module docstring. :meth:`encode` runs in a worker
    thread, one call at a time."""

    def __init__(self, quality: int = 75, *, rate: float = 30.0) -> None:
        self.quality = quality
        self.rate = rate
        self._context: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._want_key = True
        self._started = 0.0
        self._last_pts = -1
        self._picture: av.VideoFrame | None = None
        """The last picture encoded (yuv420p), updated where the screen changed."""
        self._planes: list[npt.NDArray[np.uint8]] = []
        self._bgra: av.VideoFrame | None = None
        """A whole frame's BGRX pixels go through this one buffer: a fresh 8 MiB buffer a frame
        costs more in page faults than the copy (PERFORMANCE.md)."""
        self._bgra_view: npt.NDArray[np.uint8] | None = None
        self._reformatter = VideoReformatter()
        self.key_frames = 0
        """IDR frames produced so far."""

    @property
    def format(self) -> str:
        return "h264"

    @property
    def key(self) -> Hashable:
        return ("h264", id(self))

    def request_key(self) -> None:
        """Make the next frame an IDR frame (with its SPS and PPS)."""
        self._want_key = True

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
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
            # No scene-cut keyframes: a viewer asks when it needs one.
            "x264-params": "scenecut=0:repeat-headers=1",
        }
        context.open()
        self._size = (width, height)
        self._started = time.monotonic()
        self._last_pts = -1
        return context

    def encode(self, frame: FrameArray, changed: Bounds) -> Encoded:
        """``frame`` (BGRX) as H.264 access units, Annex B; ``key`` for an IDR frame.
        ``changed``: where ``frame`` differs from the one encoded before."""
        height, width = frame.shape[:2]
        even_w, even_h = width - width % 2, height - height % 2
        if self._context is None or self._size != (even_w, even_h):
            self._context = self._open(even_w, even_h)
            self._want_key = True
        key = self._want_key
        self._want_key = False
        picture = self._convert(frame[:even_h, :even_w], changed, whole=key)
        # Real time as the timestamp (ms), so that rate control sees the real frame rate;
        # strictly increasing, as the encoder requires.
        pts = max(self._last_pts + 1, round((time.monotonic() - self._started) * 1000))
        self._last_pts = pts
        picture.pts = pts
        picture.time_base = _TIME_BASE
        # The picture is reused: its type must be set every time, not only for a key frame.
        picture.pict_type = PictureType.I if key else PictureType.NONE
        try:
            packets = self._context.encode(picture)
        except av.FFmpegError as err:
            self._context = None  # start afresh (and with a key frame) next time
            raise DeviceError(f"H.264 encoding failed: {err}") from err
        data = b"".join(bytes(packet) for packet in packets)
        is_key = any(packet.is_keyframe for packet in packets)
        self.key_frames += is_key
        return Encoded(data, key=is_key)

    def _convert(self, pixels: FrameArray, changed: Bounds, *, whole: bool) -> av.VideoFrame:
        """The picture to encode: ``pixels`` converted to yuv420p, all of it (``whole``, or
        the first time), else only ``changed`` into the last picture."""
        height, width = pixels.shape[:2]
        picture = self._picture
        if whole or picture is None or (picture.width, picture.height) != (width, height):
            picture = self._whole_yuv(pixels)
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

    def _whole_yuv(self, pixels: FrameArray) -> av.VideoFrame:
        """All of ``pixels`` as yuv420p, through the reused BGRA buffer."""
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
        return self._reformatter.reformat(self._bgra, format="yuv420p", threads=_SWSCALE_THREADS)


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
