"""The console's frame encodings on their own: JPEG rectangles, H.264 (decoded back by PyAV; at
half size while the screen moves, at full size again once it settles), the key gate that makes a
consumer skip to a key frame, and a frame source that makes a key frame on request and settles
a halved H.264 stream."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
import simplejpeg

from remotehands.agent.framesource import (
    Encoded,
    FrameSource,
    JpegEncoder,
    JpegRectEncoder,
    encoder_for,
)
from remotehands.agent.h264 import H264Encoder, crf_for_quality
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import ValidationError
from remotehands.protocol.models import Bounds
from remotehands.protocol.streams import Frame, KeyGate

WHOLE = Bounds(x=0, y=0, width=320, height=200)


def _frame(value: int = 40) -> np.ndarray:
    frame = np.full((200, 320, 4), value, np.uint8)
    frame[::8, :, :3] = 200  # some texture (grey: 4:2:0 keeps it)
    return frame


def test_jpeg_rect_encodes_the_whole_frame_as_a_key_and_a_change_as_its_rectangle() -> None:
    encoder = JpegRectEncoder(80)
    frame = _frame()
    whole = encoder.encode(frame, WHOLE)
    assert whole.key and (whole.x, whole.y) == (0, 0)
    assert simplejpeg.decode_jpeg(whole.data).shape == (200, 320, 3)
    frame[50:70, 100:140] = 250
    rect = encoder.encode(frame, Bounds(x=100, y=50, width=40, height=20))
    assert not rect.key and (rect.x, rect.y) == (100, 50)
    pixels = simplejpeg.decode_jpeg(rect.data)
    assert pixels.shape == (20, 40, 3) and pixels.min() > 230
    assert len(rect.data) < len(whole.data)


def test_h264_starts_with_an_idr_sends_small_deltas_and_an_idr_on_request() -> None:
    encoder = H264Encoder(75)
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    frame = _frame()
    out: list[Encoded] = []
    for step in range(4):
        frame[100:110, 10 * step : 10 * step + 8] = 255
        out.append(encoder.encode(frame, WHOLE))
    encoder.request_key()
    out.append(encoder.encode(frame, WHOLE))
    assert [e.key for e in out] == [True, False, False, False, True]
    assert out[0].data.startswith(b"\x00\x00\x00\x01")  # Annex B, SPS first
    assert out[0].data[4] & 0x1F == 7 and out[0].data[5] == 0x42  # constrained baseline
    assert all(len(e.data) < len(out[0].data) for e in out[1:4])
    pictures = [p for e in out for p in decoder.decode(av.Packet(e.data))]
    assert len(pictures) == 5
    shown = pictures[-1].to_ndarray(format="rgb24")
    assert shown.shape == (200, 320, 3) and shown[104, 35].min() > 200


def test_h264_leaves_out_an_odd_last_column() -> None:
    encoded = H264Encoder().encode(np.zeros((101, 161, 4), np.uint8), WHOLE)
    decoder = av.CodecContext.create("h264", "r")
    [picture] = decoder.decode(av.Packet(encoded.data))
    assert (picture.width, picture.height) == (160, 100)


def test_encoder_for_each_format() -> None:
    assert isinstance(encoder_for("jpeg", 60), JpegEncoder)
    assert isinstance(encoder_for("jpeg-rect"), JpegRectEncoder)
    h264 = encoder_for("h264")
    assert isinstance(h264, H264Encoder) and h264.key != H264Encoder().key  # never shared
    with pytest.raises(ValidationError, match="unknown frame format"):
        encoder_for("vp9")
    assert crf_for_quality(75) == 23 and crf_for_quality(1) == 51


def _f(seq: int, key: bool) -> Frame:
    return Frame(seq, 0.0, 320, 200, "h264", b"x", key=key)


def test_the_key_gate_skips_to_a_key_frame_after_a_gap_and_asks_once() -> None:
    gate = KeyGate(ask_every_s=1.0)
    assert gate.admit(_f(1, False), 0.0) == (False, True)  # no key frame yet: ask
    assert gate.admit(_f(2, False), 0.1) == (False, False)  # asked already
    assert gate.admit(_f(3, True), 0.2) == (True, False)
    assert gate.admit(_f(4, False), 0.3) == (True, False)
    assert gate.admit(_f(6, False), 0.4) == (False, True)  # 5 was lost: ask at once
    assert gate.admit(_f(7, False), 0.5) == (False, False)
    assert gate.admit(_f(8, False), 1.5) == (False, True)  # the request may be lost: again
    assert gate.admit(_f(9, True), 1.6) == (True, False)
    gate.reset()
    assert gate.admit(_f(10, False), 1.7)[0] is False
    assert gate.skipped == 6
    jpeg = KeyGate()
    assert all(jpeg.admit(Frame(s, 0, 1, 1, "jpeg", b""), 0)[0] for s in (1, 5, 9))


@pytest.mark.anyio
async def test_a_frame_source_makes_a_key_frame_on_request_though_nothing_changed() -> None:
    driver = FakeDriver(320, 200)
    source = FrameSource(driver, rate=60, linger_s=0.1)
    async with source.subscribe(encoder=JpegRectEncoder(), depth=4) as frames:
        async with asyncio.timeout(10):
            first = await anext(frames)
            assert first.key and first.format == "jpeg-rect"
            driver.fill((0, 0, 255), Bounds(x=10, y=20, width=30, height=40))
            rect = await anext(frames)
            assert not rect.key and (rect.x, rect.y) == (10, 20)
            frames.request_key()
            again = await anext(frames)
        assert again.key and again.seq == rect.seq + 1
        assert simplejpeg.decode_jpeg(again.data).shape == (200, 320, 3)
    await source.aclose()


def test_h264_converts_only_the_changed_rectangle_and_the_picture_stays_whole() -> None:
    encoder = H264Encoder(90)
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    frame = _frame()
    pictures = list(decoder.decode(av.Packet(encoder.encode(frame, WHOLE).data)))
    # An odd rectangle: rounded out to even pixels, its chroma blocks whole.
    frame[51:68, 101:139, :3] = (20, 40, 230)  # BGR: red
    delta = encoder.encode(frame, Bounds(x=101, y=51, width=38, height=17))
    assert not delta.key
    pictures += decoder.decode(av.Packet(delta.data))
    shown = pictures[-1].to_ndarray(format="rgb24").astype(int)
    expected = frame[:, :, 2::-1].astype(int)
    assert np.abs(shown - expected).mean() < 3
    assert tuple(shown[60, 120]) == pytest.approx((230, 40, 20), abs=16)


# -- half size while the screen moves ------------------------------------------------------------

WIDE = Bounds(x=0, y=0, width=1280, height=720)


class _Clock:
    """The encoder's clock, moved on by the test: motion and settling are about time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _wide(value: int) -> np.ndarray:
    frame = np.full((720, 1280, 4), value, np.uint8)
    frame[::16, :, :3] = 255 - value  # lines: something for the encoder to see
    return frame


def _decode(decoder: av.VideoCodecContext, encoded: Encoded) -> av.VideoFrame:
    [picture] = decoder.decode(av.Packet(encoded.data))
    return picture


def test_h264_halves_a_moving_screen_and_settles_back_to_full_size_with_an_idr() -> None:
    clock = _Clock()
    encoder = H264Encoder(80, clock=clock)
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.thread_count = 1
    first = encoder.encode(_wide(20), WIDE)
    assert first.key and (_decode(decoder, first).width, encoder.reduced) == (1280, False)
    # One big change alone (a page turned) stays sharp.
    clock.now += 1.0
    turned = encoder.encode(_wide(60), WIDE)
    assert not turned.key and _decode(decoder, turned).width == 1280
    # A second one soon after: the screen moves; half size, from an IDR of that size.
    clock.now += 0.03
    moving = encoder.encode(_wide(100), WIDE)
    assert moving.key and encoder.reduced
    picture = _decode(decoder, moving)
    assert (picture.width, picture.height) == (640, 360)
    clock.now += 0.03
    still_moving = encoder.encode(_wide(140), WIDE)
    assert not still_moving.key and _decode(decoder, still_moving).width == 640
    # A small change before it settled stays at half size.
    frame = _wide(140)
    frame[10:20, 10:20, :3] = 0
    clock.now += 0.03
    small = encoder.encode(frame, Bounds(x=10, y=10, width=10, height=10))
    assert not small.key and _decode(decoder, small).width == 640
    assert encoder.settle_due == pytest.approx(clock.now - 0.03 + 0.3)
    # Nothing changes any more: settle sends the same frame at full size, an IDR.
    clock.now += 0.3
    settled = encoder.settle(frame)
    assert settled is not None and settled.key and not encoder.reduced
    assert encoder.settle_due is None and encoder.settle(frame) is None
    picture = _decode(decoder, settled)
    assert (picture.width, picture.height) == (1280, 720)
    shown = picture.to_ndarray(format="rgb24").astype(int)
    assert np.abs(shown - frame[:, :, 2::-1].astype(int)).mean() < 3
    # And on from there in small deltas at full size.
    frame[30:40, 30:40, :3] = 255
    clock.now += 1.0
    after = encoder.encode(frame, Bounds(x=30, y=30, width=10, height=10))
    assert not after.key and _decode(decoder, after).width == 1280
    assert encoder.reduced_frames == 3 and encoder.key_frames == 3


def test_h264_back_to_full_size_at_a_small_change_after_the_motion() -> None:
    clock = _Clock()
    encoder = H264Encoder(80, clock=clock)
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.thread_count = 1
    for value in (20, 60, 100):
        _decode(decoder, encoder.encode(_wide(value), WIDE))
        clock.now += 0.03
    assert encoder.reduced
    frame = _wide(100)
    frame[10:20, 10:20, :3] = 0
    clock.now += 0.3
    typed = encoder.encode(frame, Bounds(x=10, y=10, width=10, height=10))
    assert typed.key and not encoder.reduced and _decode(decoder, typed).width == 1280


def test_h264_keeps_a_small_screen_or_one_told_not_to_at_full_size() -> None:
    for encoder, frame in ((H264Encoder(), _frame()), (H264Encoder(reduce_from=None), _wide(9))):
        height, width = frame.shape[:2]
        for value in (20, 60, 100, 140):
            frame[:, :, :3] = value
            encoder.encode(frame, Bounds(x=0, y=0, width=width, height=height))
        assert not encoder.reduced and encoder.reduced_frames == 0


@pytest.mark.anyio
async def test_a_frame_source_settles_a_halved_h264_stream_at_full_size() -> None:
    driver = FakeDriver(1280, 720)
    source = FrameSource(driver, rate=60, linger_s=0.1)
    encoder = H264Encoder(80)
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.thread_count = 1
    sizes: list[tuple[int, int, bool]] = []
    async with source.subscribe(encoder=encoder, depth=8) as frames:
        async with asyncio.timeout(20):
            value = 0
            # The screen moves (half of it changes at each frame) until frames go at half size.
            while not sizes or sizes[-1][0] != 640:
                value = (value + 37) % 256
                driver.fill((value, value, 255 - value), Bounds(x=0, y=0, width=1280, height=360))
                frame = await anext(frames)
                picture = _decode(decoder, Encoded(frame.data))
                sizes.append((picture.width, picture.height, frame.key))
                assert (frame.width, frame.height) == (1280, 720)  # the screen's own size
            # Then it stops: the last frame comes again at full size, an IDR frame.
            while sizes[-1][0] != 1280:
                frame = await anext(frames)
                picture = _decode(decoder, Encoded(frame.data))
                sizes.append((picture.width, picture.height, frame.key))
    await source.aclose()
    assert sizes[-1] == (1280, 720, True) and (640, 360, True) in sizes
    shown = picture.to_ndarray(format="rgb24").astype(int)
    assert np.abs(shown - driver.framebuffer[:, :, 2::-1].astype(int)).mean() < 3


def test_h264_a_key_frame_asked_for_is_not_motion() -> None:
    clock = _Clock()
    encoder = H264Encoder(80, clock=clock)
    encoder.encode(_wide(20), WIDE)  # the first frame: whole, a key frame
    clock.now += 0.03
    encoder.encode(_wide(60), WIDE)  # one big change after it: not yet motion
    assert not encoder.reduced
    encoder.request_key()
    clock.now += 0.03
    assert encoder.encode(_wide(60), WIDE).key and not encoder.reduced
    clock.now += 0.03
    encoder.encode(_wide(100), WIDE)  # the second big change in a row: motion
    assert encoder.reduced
