"""remotehands.agent.stability: the diff against a naive reference, and wait_stable driven by a
fake screen on an injected clock (no real waiting)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotehands.agent.stability import FrameDiff, StabilityParams, StabilityResult, wait_stable
from remotehands.errors import DeviceTimeoutError, ValidationError
from remotehands.protocol.models import Bounds

Scene = Callable[[int, np.ndarray], None]
"""Paints the screen at a time in ms into a frame."""


class FakeScreen:
    """A screen whose picture is a function of a fake clock. ``grab`` reuses one buffer, as
    real drivers may, so a wait that forgets to copy sees every frame equal."""

    def __init__(self, scene: Scene, width: int = 320, height: int = 240) -> None:
        self.scene = scene
        self.now_ms = 0
        self.shape = (height, width, 4)
        self.buffer = np.zeros(self.shape, np.uint8)
        self.grabs = 0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now_ms / 1000

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_ms += round(seconds * 1000)

    async def grab(self) -> np.ndarray:
        self.grabs += 1
        if self.buffer.shape != self.shape:
            self.buffer = np.zeros(self.shape, np.uint8)
        self.buffer[...] = (40, 40, 40, 255)
        self.scene(self.now_ms, self.buffer)
        return self.buffer

    async def wait(self, **params: object) -> StabilityResult:
        return await wait_stable(
            self.grab, StabilityParams.parse(params), clock=self.clock, sleep=self.sleep
        )


def still(_: int, frame: np.ndarray) -> None:
    frame[10:30, 10:100] = (255, 255, 255, 255)


def moving_box(x0: int = 0, y0: int = 100, size: int = 20) -> Scene:
    """A box that moves 5 px a poll-ish (one px every 40 ms) along a row."""

    def scene(now_ms: int, frame: np.ndarray) -> None:
        x = x0 + (now_ms // 40) % 200
        frame[y0 : y0 + size, x : x + size] = (0, 0, 255, 255)

    return scene


# -- wait_stable -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_still_screen_is_stable_after_the_window() -> None:
    screen = FakeScreen(still)
    result = await screen.wait()
    assert result.stable and not result.timed_out
    # polls at 0, 200, 400, 600 ms: still since 0, 600 >= 500
    assert result.polls == 4
    assert result.waited_ms == 600
    assert result.change_ratio_last == 0.0
    assert screen.sleeps == [0.2, 0.2, 0.2]


@pytest.mark.anyio
async def test_result_frame_is_a_copy_of_the_last_frame() -> None:
    screen = FakeScreen(still)
    result = await screen.wait()
    frame = result.frame
    assert frame is not screen.buffer and not np.shares_memory(frame, screen.buffer)
    assert (frame == screen.buffer).all()
    assert result.to_wire() == {
        "stable": True,
        "timed_out": False,
        "waited_ms": 600,
        "polls": 4,
        "change_ratio_last": 0.0,
    }


@pytest.mark.anyio
async def test_animation_times_out() -> None:
    screen = FakeScreen(moving_box())
    result = await screen.wait(timeout_ms=2000)
    assert not result.stable and result.timed_out
    assert result.waited_ms == 2000
    assert result.polls == 11
    assert result.change_ratio_last > 0.002
    # the buffer is reused by grab: only copies can have seen the motion
    assert (result.frame == screen.buffer).all()


@pytest.mark.anyio
async def test_last_poll_lands_on_the_deadline() -> None:
    screen = FakeScreen(moving_box())
    result = await screen.wait(timeout_ms=1000, poll_interval_ms=300)
    assert screen.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert result.waited_ms == 1000 and result.polls == 5


@pytest.mark.anyio
async def test_animation_inside_ignore_region_is_stable() -> None:
    screen = FakeScreen(moving_box(y0=100))
    result = await screen.wait(ignore_region="0,90,320,40")
    assert result.stable
    assert result.waited_ms == 600


@pytest.mark.anyio
async def test_change_outside_watch_region_is_ignored() -> None:
    screen = FakeScreen(moving_box(y0=100))
    result = await screen.wait(watch_region=[{"x": 0, "y": 0, "width": 320, "height": 60}])
    assert result.stable


@pytest.mark.anyio
async def test_change_inside_watch_region_counts() -> None:
    screen = FakeScreen(moving_box(y0=100))
    result = await screen.wait(watch_region="0,0,320,60;0,100,320,20", timeout_ms=1000)
    assert result.timed_out


@pytest.mark.anyio
async def test_watch_and_ignore_combine() -> None:
    # watch the box's row but ignore where it moves: nothing left moves
    screen = FakeScreen(moving_box(y0=100))
    result = await screen.wait(watch_region="0,80,320,80", ignore_region="0,100,320,20")
    assert result.stable


@pytest.mark.anyio
async def test_regions_are_shifted_by_the_origin() -> None:
    # a region grab at (1000, 500): the ignore region is in screen coordinates
    screen = FakeScreen(moving_box(y0=100))
    params = StabilityParams.parse({"ignore_region": "1000,590,320,40"})
    result = await wait_stable(
        screen.grab, params, origin=(1000, 500), clock=screen.clock, sleep=screen.sleep
    )
    assert result.stable


@pytest.mark.anyio
async def test_small_changes_under_stable_ratio_are_still() -> None:
    def blinking_cursor(now_ms: int, frame: np.ndarray) -> None:
        if (now_ms // 200) % 2:
            frame[50:60, 50:52] = (255, 255, 255, 255)  # 20 of 76800 px: 0.026 %

    screen = FakeScreen(blinking_cursor)
    result = await screen.wait()
    assert result.stable
    assert 0 < result.change_ratio_last < 0.002
    strict = await FakeScreen(blinking_cursor).wait(stable_ratio=0.0, timeout_ms=1000)
    assert strict.timed_out


@pytest.mark.anyio
async def test_noise_under_pixel_delta_is_still() -> None:
    rng = np.random.default_rng(7)

    def noisy(_: int, frame: np.ndarray) -> None:
        frame[..., :3] = 100 + rng.integers(-10, 11, (*frame.shape[:2], 3), dtype=np.int16)

    result = await FakeScreen(noisy).wait(pixel_delta=20)
    assert result.stable and result.change_ratio_last == 0.0
    result = await FakeScreen(noisy).wait(pixel_delta=5, timeout_ms=1000)
    assert result.timed_out and result.change_ratio_last > 0.5


@pytest.mark.anyio
async def test_min_change_ratio_waits_for_the_change_then_settles() -> None:
    def dialog_opens_at_1s(now_ms: int, frame: np.ndarray) -> None:
        if now_ms >= 1000:
            frame[0:120, :] = (200, 200, 200, 255)  # half the screen

    screen = FakeScreen(dialog_opens_at_1s)
    result = await screen.wait(min_change_ratio=0.3)
    assert result.stable
    # the change is seen at 1000 ms; still at 1200, 1400, 1600 -> 600 >= 500
    assert result.waited_ms == 1600
    assert result.polls == 9
    assert (result.frame[0, 0, :3] == 200).all()


@pytest.mark.anyio
async def test_min_change_ratio_that_never_comes_times_out() -> None:
    screen = FakeScreen(still)
    result = await screen.wait(min_change_ratio=0.01, timeout_ms=1000)
    assert result.timed_out and not result.stable
    assert result.waited_ms == 1000


@pytest.mark.anyio
async def test_min_change_too_small_is_not_enough() -> None:
    def small_change(now_ms: int, frame: np.ndarray) -> None:
        if now_ms >= 400:
            frame[0:10, 0:10] = (255, 255, 255, 255)

    result = await FakeScreen(small_change).wait(min_change_ratio=0.05, timeout_ms=1500)
    assert result.timed_out


@pytest.mark.anyio
async def test_zero_window_needs_one_still_comparison() -> None:
    screen = FakeScreen(moving_box())
    result = await screen.wait(stable_window_ms=0, timeout_ms=600)
    assert result.timed_out
    result = await FakeScreen(still).wait(stable_window_ms=0)
    assert result.stable and result.polls == 2


@pytest.mark.anyio
async def test_zero_timeout_answers_after_one_grab() -> None:
    screen = FakeScreen(still)
    result = await screen.wait(timeout_ms=0)
    assert result.timed_out and result.polls == 1 and result.waited_ms == 0


@pytest.mark.anyio
async def test_small_frames_are_diffed_inline() -> None:
    screen = FakeScreen(still, width=64, height=32)
    result = await screen.wait()
    assert result.stable


@pytest.mark.anyio
async def test_resolution_change_counts_as_a_change() -> None:
    screen = FakeScreen(still)
    original = screen.grab

    async def grab() -> np.ndarray:
        if screen.now_ms >= 400:
            screen.shape = (200, 300, 4)
        return await original()

    params = StabilityParams.parse({})
    result = await wait_stable(grab, params, clock=screen.clock, sleep=screen.sleep)
    assert result.stable and result.frame.shape == (200, 300, 4)
    assert result.waited_ms == 1000  # changed at 400, still until 1000


@pytest.mark.anyio
async def test_strided_frames_are_accepted() -> None:
    screen = FakeScreen(still, width=400)

    async def grab() -> np.ndarray:
        return (await screen.grab())[:, 40:360]

    result = await wait_stable(grab, StabilityParams(), clock=screen.clock, sleep=screen.sleep)
    assert result.stable and result.frame.shape == (240, 320, 4)


@pytest.mark.anyio
async def test_a_grab_that_hangs_times_out() -> None:
    async def hang() -> np.ndarray:
        await asyncio.Event().wait()
        raise AssertionError

    with pytest.raises(DeviceTimeoutError, match="did not answer"):
        await wait_stable(hang, StabilityParams(), grab_timeout_s=0.05)


@pytest.mark.anyio
async def test_regions_that_leave_nothing_to_watch() -> None:
    with pytest.raises(ValidationError, match="nothing left to watch"):
        await FakeScreen(still).wait(ignore_region="0,0,320,240")
    with pytest.raises(ValidationError, match="outside the 320x240 frame"):
        await FakeScreen(still).wait(watch_region="400,400,10,10")


@pytest.mark.anyio
async def test_bad_frames_are_refused() -> None:
    async def grab() -> np.ndarray:
        return np.zeros((10, 10, 3), np.uint8)

    with pytest.raises(ValidationError, match="BGRX"):
        await wait_stable(grab, StabilityParams())


# -- parameters ------------------------------------------------------------------------------


def test_params_defaults_match_the_reference() -> None:
    params = StabilityParams()
    assert (params.pixel_delta, params.stable_ratio, params.stable_window_ms) == (30, 0.2, 500)
    assert (params.timeout_ms, params.poll_interval_ms) == (5000, 200)
    assert params.min_change_ratio is None
    assert params.ignore_region == [] and params.watch_region == []


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"pixel_delta": 256}, "pixel_delta"),
        ({"pixel_delta": -1}, "pixel_delta"),
        ({"stable_ratio": 101}, "stable_ratio"),
        ({"stable_window_ms": -1}, "stable_window_ms"),
        ({"timeout_ms": 10**9}, "timeout_ms"),
        ({"poll_interval_ms": 0}, "poll_interval_ms"),
        ({"min_change_ratio": 1.5}, "min_change_ratio"),
        ({"ignore_region": "1,2"}, "ignore_region"),
        ({"watch_region": "x"}, "watch_region"),
        ({"pixel_deltas": 3}, "pixel_deltas"),
    ],
)
def test_params_refuse_out_of_range(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        StabilityParams.parse(values)


def test_params_take_region_strings_and_lists() -> None:
    params = StabilityParams.parse({"ignore_region": "1,2,3,4;5,6,7,8", "watch_region": None})
    assert params.ignore_region == [
        Bounds(x=1, y=2, width=3, height=4),
        Bounds(x=5, y=6, width=7, height=8),
    ]
    params = StabilityParams(watch_region=[Bounds(x=0, y=0, width=1, height=1)])
    assert len(params.watch_region) == 1


# -- FrameDiff against a naive reference -----------------------------------------------------


def naive_ratio(a: np.ndarray, b: np.ndarray, delta: int, mask: np.ndarray | None = None) -> float:
    moved = (np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)) > delta).any(axis=2)
    if mask is None:
        return float(moved.mean())
    return float(moved[mask].sum() / mask.sum())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    delta=st.integers(0, 255),
    change=st.floats(0.0, 1.0),
    use_regions=st.booleans(),
)
def test_frame_diff_matches_the_naive_count(
    seed: int, delta: int, change: float, use_regions: bool
) -> None:
    rng = np.random.default_rng(seed)
    height, width = 37, 53
    a = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    b = a.copy()
    changed = rng.random((height, width)) < change
    b[changed] = rng.integers(0, 256, (int(changed.sum()), 4), dtype=np.uint8)
    b[..., 3] = rng.integers(0, 256, (height, width), dtype=np.uint8)  # X never counts
    watch = [Bounds(x=5, y=3, width=30, height=20), Bounds(x=20, y=10, width=40, height=40)]
    ignore = [Bounds(x=10, y=5, width=8, height=8)]
    mask = None
    if use_regions:
        mask = np.zeros((height, width), bool)
        mask[3:23, 5:35] = True
        mask[10:50, 20:60] = True
        mask[5:13, 10:18] = False
    diff = FrameDiff(
        height,
        width,
        delta,
        ignore=ignore if use_regions else (),
        watch=watch if use_regions else (),
    )
    try:
        assert diff.ratio(a, b) == pytest.approx(naive_ratio(a, b, delta, mask))
        assert diff.ratio(a, a) == 0.0
    finally:
        diff.close()


def test_frame_diff_of_other_sizes_is_total() -> None:
    diff = FrameDiff(4, 4)
    assert diff.ratio(np.zeros((4, 4, 4), np.uint8), np.zeros((5, 4, 4), np.uint8)) == 1.0


def test_frame_diff_tells_identical_frames() -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    b = a.copy()
    b[0, 0, 3] = 1  # only the X byte: no change counted, but not identical
    diff = FrameDiff(8, 8)
    assert diff.ratio(a, a.copy()) == 0.0 and diff.identical
    assert diff.ratio(a, b) == 0.0 and not diff.identical
    watched = FrameDiff(8, 8, watch=[Bounds(x=0, y=0, width=4, height=4)])
    assert watched.ratio(a, a) == 0.0 and not watched.identical  # pixels outside unseen
