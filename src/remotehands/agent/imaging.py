"""Pure image work on raw frames: encode, crop, scale, mark the cursor, parse region lists.

Frames are ``(height, width, 4)`` ``uint8`` arrays in BGRX order (see
:mod:`remotehands.drivers.base`). Every function here is synchronous and CPU-bound: callers on
the event loop run them with :func:`asyncio.to_thread`.

Costs this module is designed to (``PERFORMANCE.md``, 1080p): JPEG q75 through simplejpeg
straight from BGRX 4-5 ms; PNG 46-624 ms and WebP 34-150 ms through Pillow, so never on a hot
path; ``reduce(2)`` 2 ms against 15-19 ms bilinear; the first touch of a fresh 8 MiB buffer
9 ms, which :class:`BufferPool` avoids for copies made on every call.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Literal, get_args

import numpy as np
import simplejpeg
from PIL import Image

from remotehands.drivers.base import FrameArray
from remotehands.errors import ValidationError
from remotehands.protocol.models import Bounds, ImageFormat
from remotehands.protocol.regions import MAX_REGIONS, parse_regions

__all__ = [
    "MAX_REGIONS",
    "MAX_SIDE",
    "MIME_TYPES",
    "POOL",
    "BufferPool",
    "ImageFormat",
    "Subsampling",
    "clip_bounds",
    "crop",
    "draw_cursor_ring",
    "encode",
    "parse_regions",
    "scale",
    "scaled_size",
]

"""The encodings a screenshot can have."""

Subsampling = Literal["444", "422", "420"]
"""JPEG chroma subsampling: ``420`` is the smallest and fastest, ``444`` keeps coloured text
sharpest."""

MIME_TYPES: Final[dict[str, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}
"""The ``Content-Type`` of each :data:`ImageFormat`."""

MAX_SIDE: Final = 16384
"""The largest width or height :func:`scale` produces (WebP stops at 16383)."""

_FORMATS: Final = frozenset(get_args(ImageFormat))
_FORMAT_MAX_SIDE: Final = {"jpeg": 65500, "png": 1 << 31, "webp": 16383}
_PNG_COMPRESS_LEVEL: Final = 1  # level 1 is 5-10x faster than the default 6 for ~15% more bytes
_WEBP_METHOD: Final = 2  # 0 (fast) .. 6 (small); 2 halves the default's time at ~5% more bytes


class BufferPool:
    """Frame-sized ``uint8`` buffers kept for reuse, so that copies made on every request do not
    pay the first-touch cost of fresh memory (9 ms for 8 MiB).

    :meth:`take` hands a buffer over (its contents are garbage); :meth:`give` hands it back once
    nothing refers to it any more; :meth:`borrowed` does both around a block. The pool keeps at
    most ``max_free`` buffers and ``max_free_bytes`` bytes; it is safe to use from any thread.
    """

    def __init__(self, max_free: int = 4, max_free_bytes: int = 64 << 20) -> None:
        self._max_free = max_free
        self._max_free_bytes = max_free_bytes
        self._free: list[FrameArray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> FrameArray:
        """A C-contiguous ``uint8`` buffer of ``shape``, reused when one is free."""
        with self._lock:
            for index, buffer in enumerate(self._free):
                if buffer.shape == shape:
                    return self._free.pop(index)
        return np.empty(shape, dtype=np.uint8)

    def give(self, buffer: FrameArray) -> None:
        """Hand ``buffer`` back; the caller must not use it afterwards."""
        if buffer.dtype != np.uint8 or not buffer.flags.c_contiguous or buffer.base is not None:
            return  # a view or a foreign array: not ours to recycle
        with self._lock:
            if any(free is buffer for free in self._free):
                return
            self._free.append(buffer)
            while self._free and (
                len(self._free) > self._max_free
                or sum(free.nbytes for free in self._free) > self._max_free_bytes
            ):
                self._free.pop(0)  # drop the oldest

    @contextmanager
    def borrowed(self, shape: tuple[int, ...]) -> Iterator[FrameArray]:
        """A buffer of ``shape`` for the duration of the ``with`` block."""
        buffer = self.take(shape)
        try:
            yield buffer
        finally:
            self.give(buffer)

    @property
    def free_count(self) -> int:
        """How many buffers wait for reuse."""
        with self._lock:
            return len(self._free)


POOL: Final = BufferPool()
"""The process-wide pool the agent's imaging uses."""


def _check_frame(frame: FrameArray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 4 or frame.dtype != np.uint8:
        raise ValidationError(
            f"a frame must be a (height, width, 4) uint8 BGRX array, got shape {frame.shape} "
            f"of {frame.dtype}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValidationError(f"the frame is empty ({frame.shape[1]}x{frame.shape[0]})")


def encode(
    frame: FrameArray,
    fmt: ImageFormat,
    quality: int = 75,
    *,
    subsampling: Subsampling = "420",
) -> bytes:
    """Encode a BGRX frame as ``fmt``.

    JPEG goes through simplejpeg straight from BGRX (no conversion, strided views accepted);
    ``quality`` (1..100) applies to JPEG and WebP. PNG is written at a low compression level and
    never optimised; PNG and WebP go through Pillow, which unpacks BGRX to RGB in one pass.
    """
    _check_frame(frame)
    if fmt not in _FORMATS:
        raise ValidationError(f"unknown image format {fmt!r}: use jpeg, png or webp")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValidationError(f"quality must be an integer from 1 to 100, got {quality!r}")
    height, width = frame.shape[:2]
    if max(width, height) > _FORMAT_MAX_SIDE[fmt]:
        raise ValidationError(
            f"a {width}x{height} image is too large for {fmt}: at most "
            f"{_FORMAT_MAX_SIDE[fmt]} pixels a side"
        )
    if fmt == "jpeg":
        data: bytes = simplejpeg.encode_jpeg(
            frame, quality=quality, colorspace="BGRX", colorsubsampling=subsampling
        )
        return data
    with _contiguous(frame) as source:
        image = Image.frombuffer("RGB", (width, height), source, "raw", "BGRX", 0, 1)
        out = io.BytesIO()
        if fmt == "png":
            image.save(out, "PNG", compress_level=_PNG_COMPRESS_LEVEL, optimize=False)
        else:
            image.save(out, "WEBP", quality=quality, method=_WEBP_METHOD)
        return out.getvalue()


@contextmanager
def _contiguous(frame: FrameArray) -> Iterator[FrameArray]:
    """``frame`` itself when C-contiguous, else a pooled copy valid inside the block."""
    if frame.flags.c_contiguous:
        yield frame
        return
    with POOL.borrowed(frame.shape) as buffer:
        np.copyto(buffer, frame)
        yield buffer


def crop(frame: FrameArray, bounds: Bounds) -> FrameArray:
    """The part of ``frame`` inside ``bounds``, as a view (no copy).

    Raises :class:`~remotehands.errors.ValidationError` when ``bounds`` does not lie wholly
    inside the frame.
    """
    _check_frame(frame)
    height, width = frame.shape[:2]
    x, y, w, h = bounds.x, bounds.y, bounds.width, bounds.height
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValidationError(
            f"crop x={x} y={y} width={w} height={h} does not fit inside the {width}x{height} frame"
        )
    return frame[y : y + h, x : x + w]


def clip_bounds(bounds: Bounds, width: int, height: int) -> Bounds | None:
    """The part of ``bounds`` inside a ``width`` x ``height`` frame, ``None`` if none is."""
    left, top = max(bounds.x, 0), max(bounds.y, 0)
    right = min(bounds.x + bounds.width, width)
    bottom = min(bounds.y + bounds.height, height)
    if right <= left or bottom <= top:
        return None
    return Bounds(x=left, y=top, width=right - left, height=bottom - top)


def scaled_size(width: int, height: int, scale_x: float, scale_y: float) -> tuple[int, int]:
    """The ``(width, height)`` :func:`scale` gives: each side times its factor, rounded half up,
    at least 1. Raises :class:`~remotehands.errors.ValidationError` for factors that are not
    positive finite numbers or a result larger than :data:`MAX_SIDE`."""
    for name, factor in (("scale_x", scale_x), ("scale_y", scale_y)):
        if not math.isfinite(factor) or factor <= 0:
            raise ValidationError(f"{name} must be a positive number, got {factor!r}")
    out_w = max(1, math.floor(width * scale_x + 0.5))
    out_h = max(1, math.floor(height * scale_y + 0.5))
    if out_w > MAX_SIDE or out_h > MAX_SIDE:
        raise ValidationError(
            f"scaling {width}x{height} by {scale_x}x{scale_y} gives {out_w}x{out_h}: at most "
            f"{MAX_SIDE} pixels a side"
        )
    return out_w, out_h


def _reduce_factor(factor: float) -> int | None:
    """``k`` when ``factor`` is exactly ``1/k`` for a whole ``k``, else ``None``."""
    k = round(1.0 / factor)
    return k if k >= 1 and abs(k * factor - 1.0) < 1e-9 else None


def scale(frame: FrameArray, scale_x: float, scale_y: float) -> FrameArray:
    """``frame`` resized by ``scale_x`` across and ``scale_y`` down (upscaling allowed).

    ``1.0, 1.0`` returns ``frame`` itself. Whole down-factors (0.5, 0.25, ...) that divide the
    size exactly average blocks of pixels (Pillow ``reduce``, ~8x faster than resampling); other
    factors resample bilinearly. The result is BGRX and may be read-only.
    """
    _check_frame(frame)
    height, width = frame.shape[:2]
    out_w, out_h = scaled_size(width, height, scale_x, scale_y)
    if (out_w, out_h) == (width, height):
        return frame
    k_x, k_y = _reduce_factor(scale_x), _reduce_factor(scale_y)
    with _contiguous(frame) as source:
        # The channels are resampled independently, so BGRX passes for Pillow's RGBX; mapping
        # the buffer (frombuffer, RGBX, stride 0) shares memory instead of copying it.
        image = Image.frombuffer("RGBX", (width, height), source, "raw", "RGBX", 0, 1)
        if k_x is not None and k_y is not None and width % k_x == 0 and height % k_y == 0:
            resized = image.reduce((k_x, k_y))
        else:
            resized = image.resize((out_w, out_h), Image.Resampling.BILINEAR)
        result: FrameArray = np.asarray(resized)
    return result


_RING_RADIUS: Final = 12
_RING_WIDTH: Final = 3
_RING_BGRX: Final = (0, 0, 255, 255)  # red
_HALO_BGRX: Final = (255, 255, 255, 255)  # white, so the ring shows on red too


def draw_cursor_ring(
    frame: FrameArray, x: int, y: int, *, radius: int = _RING_RADIUS
) -> FrameArray:
    """A copy of ``frame`` with a ring around the cursor at ``(x, y)``.

    The ring is red, ``3`` px wide, edged 1 px in white on both sides so it shows on any
    background; it is clipped at the frame's edges (a cursor off the frame draws nothing). The
    copy comes from :data:`POOL`: give it back when done with it, if you like.
    """
    _check_frame(frame)
    height, width = frame.shape[:2]
    out = POOL.take(frame.shape)
    np.copyto(out, frame)
    reach = radius + _RING_WIDTH
    left, right = max(x - reach, 0), min(x + reach + 1, width)
    top, bottom = max(y - reach, 0), min(y + reach + 1, height)
    if left >= right or top >= bottom:
        return out
    ys = np.arange(top, bottom, dtype=np.float32)[:, None] - y
    xs = np.arange(left, right, dtype=np.float32)[None, :] - x
    off_ring = np.abs(np.sqrt(ys * ys + xs * xs) - radius)
    patch = out[top:bottom, left:right]
    half = _RING_WIDTH / 2
    patch[(off_ring > half) & (off_ring <= half + 1)] = _HALO_BGRX
    patch[off_ring <= half] = _RING_BGRX
    return out
