"""The console's frame encodings on their own: JPEG rectangles, H.264 (decoded back by PyAV),
the key gate that makes a consumer skip to a key frame, and a frame source that makes a key
frame on request."""

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
