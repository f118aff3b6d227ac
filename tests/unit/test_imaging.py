"""remotehands.agent.imaging on real numpy frames, decoded back with Pillow and simplejpeg."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import simplejpeg
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from remotehands.agent import imaging
from remotehands.agent.imaging import BufferPool, ImageFormat
from remotehands.errors import ValidationError
from remotehands.protocol.models import Bounds

RED, GREEN, BLUE = (0, 0, 255, 255), (0, 255, 0, 255), (255, 0, 0, 255)  # BGRX


def solid(width: int, height: int, bgrx: tuple[int, int, int, int] = RED) -> np.ndarray:
    frame = np.empty((height, width, 4), np.uint8)
    frame[...] = bgrx
    return frame


def quadrants(width: int = 64, height: int = 48) -> np.ndarray:
    """Red top-left, green top-right, blue bottom-left, grey bottom-right."""
    frame = solid(width, height)
    frame[: height // 2, width // 2 :] = GREEN
    frame[height // 2 :, : width // 2] = BLUE
    frame[height // 2 :, width // 2 :] = (128, 128, 128, 255)
    return frame


def decode(data: bytes) -> np.ndarray:
    """RGB pixels of an encoded image."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def close(pixel: np.ndarray, rgb: tuple[int, int, int], tolerance: int) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= tolerance))


# -- encode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "magic", "tolerance"),
    [("jpeg", b"\xff\xd8\xff", 12), ("png", b"\x89PNG", 0), ("webp", b"RIFF", 12)],
)
def test_encode_keeps_size_and_colours(fmt: ImageFormat, magic: bytes, tolerance: int) -> None:
    frame = quadrants()
    data = imaging.encode(frame, fmt)
    assert data.startswith(magic)
    rgb = decode(data)
    assert rgb.shape == (48, 64, 3)
    assert close(rgb[5, 5], (255, 0, 0), tolerance)
    assert close(rgb[5, 60], (0, 255, 0), tolerance)
    assert close(rgb[40, 5], (0, 0, 255), tolerance)
    assert close(rgb[40, 60], (128, 128, 128), tolerance)


def test_jpeg_decodes_with_simplejpeg_and_quality_changes_size() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
    small, large = imaging.encode(frame, "jpeg", 10), imaging.encode(frame, "jpeg", 95)
    assert len(small) < len(large)
    assert simplejpeg.decode_jpeg(large, colorspace="RGB").shape == (120, 160, 3)


def test_jpeg_444_subsampling_is_accepted() -> None:
    data = imaging.encode(quadrants(), "jpeg", 90, subsampling="444")
    assert close(decode(data)[5, 5], (255, 0, 0), 8)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_encode_accepts_strided_views(fmt: ImageFormat) -> None:
    frame = quadrants(128, 96)
    view = frame[48:, 64:]  # the grey quadrant, not contiguous
    rgb = decode(imaging.encode(view, fmt))
    assert rgb.shape == (48, 64, 3)
    assert close(rgb[10, 10], (128, 128, 128), 12)


@pytest.mark.parametrize("quality", [0, 101, -5, 1.5, True])
def test_encode_refuses_bad_quality(quality: object) -> None:
    with pytest.raises(ValidationError, match="quality"):
        imaging.encode(quadrants(), "jpeg", quality)  # type: ignore[arg-type]  # testing bad input


def test_encode_refuses_unknown_format_and_bad_frames() -> None:
    with pytest.raises(ValidationError, match="format"):
        imaging.encode(quadrants(), "gif")  # type: ignore[arg-type]  # testing bad input
    with pytest.raises(ValidationError, match="BGRX"):
        imaging.encode(np.zeros((4, 4, 3), np.uint8), "png")
    with pytest.raises(ValidationError, match="empty"):
        imaging.encode(np.zeros((0, 4, 4), np.uint8), "png")


def test_webp_refuses_a_side_over_its_limit() -> None:
    frame = np.broadcast_to(np.zeros(4, np.uint8), (1, 16384, 4))
    with pytest.raises(ValidationError, match="too large for webp"):
        imaging.encode(frame, "webp")


# -- crop ------------------------------------------------------------------------------------


def test_crop_is_a_view_of_the_bounds() -> None:
    frame = quadrants()
    part = imaging.crop(frame, Bounds(x=32, y=0, width=32, height=24))
    assert part.shape == (24, 32, 4)
    assert np.shares_memory(part, frame)
    assert (part == np.array(GREEN, np.uint8)).all()


@pytest.mark.parametrize(
    "bounds",
    [
        Bounds(x=-1, y=0, width=10, height=10),
        Bounds(x=0, y=-1, width=10, height=10),
        Bounds(x=60, y=0, width=5, height=10),
        Bounds(x=0, y=40, width=10, height=9),
    ],
)
def test_crop_outside_names_the_frame(bounds: Bounds) -> None:
    with pytest.raises(ValidationError, match="64x48 frame"):
        imaging.crop(quadrants(), bounds)


def test_clip_bounds() -> None:
    assert imaging.clip_bounds(Bounds(x=-10, y=5, width=30, height=100), 64, 48) == Bounds(
        x=0, y=5, width=20, height=43
    )
    assert imaging.clip_bounds(Bounds(x=64, y=0, width=5, height=5), 64, 48) is None


# -- scale -----------------------------------------------------------------------------------


def test_scale_one_returns_the_frame_itself() -> None:
    frame = quadrants()
    assert imaging.scale(frame, 1.0, 1.0) is frame


@pytest.mark.parametrize(
    ("sx", "sy", "size"),
    [
        (0.5, 0.5, (32, 24)),  # reduce
        (0.25, 0.5, (16, 24)),  # reduce, two factors
        (1.0, 0.5, (64, 24)),  # reduce on one axis
        (2.0, 2.0, (128, 96)),  # bilinear up
        (0.75, 0.6, (48, 29)),  # bilinear down
        (0.5, 1 / 3, (32, 16)),  # 1/3 divides 48
    ],
)
def test_scale_sizes_and_colours(sx: float, sy: float, size: tuple[int, int]) -> None:
    out = imaging.scale(quadrants(), sx, sy)
    width, height = size
    assert out.shape == (height, width, 4)
    assert out.dtype == np.uint8
    # the quadrants' middles keep their colours, in BGRX order
    assert tuple(out[height // 4, width // 4]) == RED
    assert tuple(out[height // 4, 3 * width // 4]) == GREEN
    assert tuple(out[3 * height // 4, width // 4]) == BLUE


def test_scale_averages_blocks_on_whole_factors() -> None:
    frame = np.zeros((2, 2, 4), np.uint8)
    frame[0, 0] = (200, 100, 40, 255)
    out = imaging.scale(frame, 0.5, 0.5)
    assert out.shape == (1, 1, 4)
    assert tuple(out[0, 0, :3]) == (50, 25, 10)


def test_scale_odd_size_falls_back_to_resampling() -> None:
    out = imaging.scale(solid(65, 49, GREEN), 0.5, 0.5)
    assert out.shape == (25, 33, 4)  # half up rounding
    assert tuple(out[10, 10]) == GREEN


def test_scale_of_a_view() -> None:
    frame = quadrants(128, 96)
    out = imaging.scale(frame[48:, :64], 0.5, 0.5)
    assert out.shape == (24, 32, 4)
    assert tuple(out[5, 5]) == BLUE


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf")])
def test_scale_refuses_bad_factors(factor: float) -> None:
    with pytest.raises(ValidationError, match="positive"):
        imaging.scale(quadrants(), factor, 1.0)


def test_scale_refuses_huge_results() -> None:
    with pytest.raises(ValidationError, match="at most 16384"):
        imaging.scale(quadrants(), 1000.0, 1.0)


def test_scaled_size_is_at_least_one() -> None:
    assert imaging.scaled_size(3, 3, 0.01, 0.01) == (1, 1)


# -- cursor ring -----------------------------------------------------------------------------


def test_cursor_ring_draws_on_a_copy() -> None:
    frame = solid(100, 80, (128, 128, 128, 255))
    out = imaging.draw_cursor_ring(frame, 50, 40)
    assert out is not frame and not np.shares_memory(out, frame)
    assert (frame[..., :3] == 128).all()  # the source is untouched
    assert tuple(out[40, 62]) == RED  # on the ring, radius 12
    assert tuple(out[28, 50]) == RED
    assert tuple(out[40, 50]) == (128, 128, 128, 255)  # the centre stays visible
    assert tuple(out[40, 80]) == (128, 128, 128, 255)  # far away untouched
    assert tuple(out[40, 64]) == (255, 255, 255, 255)  # the white halo outside the ring
    assert tuple(out[40, 60]) == (255, 255, 255, 255)  # and inside it


def test_cursor_ring_clips_at_the_edges() -> None:
    frame = solid(30, 20, (0, 0, 0, 255))
    out = imaging.draw_cursor_ring(frame, 0, 0)
    assert tuple(out[0, 12]) == RED
    off = imaging.draw_cursor_ring(frame, 500, 500)
    assert (off == frame).all()


# -- buffer pool -----------------------------------------------------------------------------


def test_buffer_pool_reuses_buffers() -> None:
    pool = BufferPool(max_free=2)
    first = pool.take((4, 4, 4))
    pool.give(first)
    assert pool.take((4, 4, 4)) is first
    with pool.borrowed((2, 2)) as borrowed:
        assert borrowed.shape == (2, 2)
    assert pool.free_count == 1
    pool.give(borrowed)  # twice: ignored
    assert pool.free_count == 1
    pool.give(np.zeros((4, 4), np.uint8)[1:])  # a view: not kept
    for _ in range(3):
        pool.give(np.empty((3, 3), np.uint8))
    assert pool.free_count == 2


def test_buffer_pool_bounds_its_bytes() -> None:
    pool = BufferPool(max_free=10, max_free_bytes=100)
    pool.give(np.empty(80, np.uint8))
    pool.give(np.empty(80, np.uint8))
    assert pool.free_count == 1


# -- parse_regions ---------------------------------------------------------------------------


def test_parse_regions_forms() -> None:
    text = ' 1,2,3,4 ; {"x": 5, "y": 6, "width": 7, "height": 8};'
    text += '[{"x":-1,"y":0,"width":1,"height":1}]'
    assert imaging.parse_regions(text) == [
        Bounds(x=1, y=2, width=3, height=4),
        Bounds(x=5, y=6, width=7, height=8),
        Bounds(x=-1, y=0, width=1, height=1),
    ]
    assert imaging.parse_regions(None) == []
    assert imaging.parse_regions("  ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "expected 'x,y,width,height'"),
        ("a,b,c,d", "expected 'x,y,width,height'"),
        ("1,2,3.5,4", "expected 'x,y,width,height'"),
        ("1,2,0,4", "positive"),
        ("1,2,3,-4", "positive"),
        ('{"x": 1}', "width"),
        ('{"x": 1, "y": 1, "width": "2", "height": 2}', "width"),
        ('{"x": 1, "y": 1, "width": 2, "height": 2, "z": 0}', "z"),
        ("{nope", "not valid JSON"),
        ("[1]", "bad region"),
    ],
)
def test_parse_regions_refuses_garbage(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        imaging.parse_regions(text)


def test_parse_regions_caps_the_count() -> None:
    with pytest.raises(ValidationError, match="too many"):
        imaging.parse_regions(";".join(["0,0,1,1"] * 65))


regions = st.builds(
    Bounds,
    x=st.integers(-5000, 5000),
    y=st.integers(-5000, 5000),
    width=st.integers(1, 10000),
    height=st.integers(1, 10000),
)


@given(st.lists(regions, max_size=8), st.lists(st.booleans(), min_size=8, max_size=8))
def test_parse_regions_round_trips(items: list[Bounds], as_json: list[bool]) -> None:
    parts = [
        json.dumps(b.model_dump()) if use_json else f"{b.x},{b.y},{b.width},{b.height}"
        for b, use_json in zip(items, as_json, strict=False)
    ]
    assert imaging.parse_regions(" ; ".join(parts)) == items


@given(st.text(max_size=60))
def test_parse_regions_never_fails_otherwise(text: str) -> None:
    try:
        result = imaging.parse_regions(text)
    except ValidationError as err:
        assert err.details
    else:
        assert all(isinstance(b, Bounds) for b in result)
