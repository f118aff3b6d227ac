"""OCR reads light text on a dark background (a terminal) as well as dark text on a light one:
a dark image is inverted once before recognition. Real tesseract on rendered text."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from remotehands.agent.ocrengine import OcrEngine, _dark_background, _grey
from remotehands.drivers.base import FrameArray

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = ["account backup branch", "cancel column config", "export filter gateway"]


def _frame(background: tuple[int, int, int], ink: tuple[int, int, int]) -> FrameArray:
    image = Image.new("RGB", (400, 120), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 13)
    for row, text in enumerate(LINES):
        draw.text((8, 8 + row * 24), text, font=font, fill=ink)
    rgba = np.asarray(image.convert("RGBA"))
    return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])  # BGRX, as a grab gives


@pytest.mark.parametrize(
    ("background", "ink", "dark"),
    [((255, 255, 255), (0, 0, 0), False), ((30, 30, 30), (220, 220, 220), True)],
    ids=["dark-on-light", "light-on-dark"],
)
def test_text_is_read_whatever_its_polarity(
    background: tuple[int, int, int], ink: tuple[int, int, int], dark: bool
) -> None:
    frame = _frame(background, ink)
    assert _dark_background(_grey(frame)) is dark
    page = OcrEngine().read(frame)
    assert [line.text for line in page.lines] == LINES
    assert all(word.confidence > 60 for word in page.words)
