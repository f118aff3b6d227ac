"""The x11 driver's pointer motion, packed directly: the bytes python-xlib would write."""

from __future__ import annotations

import pytest
from Xlib import X
from Xlib.ext import xtest

from remotehands.drivers.x11.input import _MOTION


@pytest.mark.parametrize(("x", "y"), [(0, 0), (1919, 1079), (640, 3), (32767, 32767)])
def test_the_packed_motion_is_xtest_fake_input(x: int, y: int) -> None:
    expected = xtest.FakeInput._request.to_binary(
        opcode=132, event_type=X.MotionNotify, detail=0, time=X.CurrentTime, root=X.NONE,
        x=x, y=y,
    )  # fmt: skip
    packed = _MOTION.pack(132, 2, _MOTION.size // 4, X.MotionNotify, 0, X.CurrentTime, X.NONE,
                          x, y)  # fmt: skip
    assert packed == expected
    assert len(packed) == 36
