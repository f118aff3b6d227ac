"""Reading text from frames: tesseract through its C API (tesserocr), words and lines with boxes.

Measured on this project's machine (bench/bench_ai.py, 2 cores under load): tesserocr reads a
400x300 region of UI text in about 200 ms and found every word; the tesseract command line
costs a process and a PNG file on top; RapidOCR (onnxruntime) took 6.5-10 s on the same region
and found 40 % of the words (``PERFORMANCE.md``: 7-8.6 s for 1080p on an idle machine). So
tesseract, in process, on a region when the caller gives one.

Tesseract wants glyphs of 20 px or more; screen text is often 10-13 px, so the image is scaled
up (1.5x unless told) before recognition and the boxes scaled back.
OpenMP threads make tesseract 5x slower on 2 cores, hence ``OMP_THREAD_LIMIT=1``, set before the
library is first loaded. One recogniser serves the agent, behind a lock (a ``TessBaseAPI`` is
not thread-safe); it runs in a worker thread, never on the event loop (callers use
:func:`asyncio.to_thread`).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image, ImageOps

from remotehands.drivers.base import FrameArray
from remotehands.errors import DeviceError, UnsupportedError
from remotehands.protocol.models import Bounds
from remotehands.protocol.results import OcrLine, OcrWord

__all__ = ["AUTO_UPSCALE", "OcrEngine", "OcrPage", "engine", "tessdata_dir"]

AUTO_UPSCALE: Final = 1.5
"""How much frames are scaled up unless the caller says otherwise. At 1x tesseract missed 12 px
labels and the text of an entry box on a 1280x800 desktop; at 1.5x it read them all. On a
400x300 region of 13 px text 1.5x costs what 1x does (about 200 ms on a loaded 2-core machine)
where 2x costs twice that (bench/bench_ai.py)."""

_TESSDATA_CANDIDATES: Final = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)


def tessdata_dir() -> str:
    """Where tesseract's language data is: ``TESSDATA_PREFIX`` or a Debian/Homebrew place.

    :class:`UnsupportedError` when no ``eng.traineddata`` is found.
    """
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *_TESSDATA_CANDIDATES]
    for folder in candidates:
        if folder and (Path(folder) / "eng.traineddata").is_file():
            return folder.rstrip("/") + "/"
    raise UnsupportedError(
        "OCR needs tesseract's English data (eng.traineddata): install the Debian package "
        "tesseract-ocr-eng, or set TESSDATA_PREFIX to the folder that holds it"
    )


@dataclass
class OcrPage:
    """What one recognition found: words and lines in reading order, boxes in frame pixels
    offset by the region's origin."""

    words: list[OcrWord]
    lines: list[OcrLine]
    upscale: float
    duration_ms: int

    @property
    def text(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(line.text for line in self.lines)


def _union(boxes: list[Bounds]) -> Bounds:
    left = min(b.x for b in boxes)
    top = min(b.y for b in boxes)
    right = max(b.x + b.width for b in boxes)
    bottom = max(b.y + b.height for b in boxes)
    return Bounds(x=left, y=top, width=right - left, height=bottom - top)


class OcrEngine:
    """One tesseract recogniser, made on first use and shared behind a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._api: Any = None
        self._module: Any = None
        self.name = "tesseract"

    def _ensure(self) -> Any:
        if self._api is not None:
            return self._api
        # OpenMP reads this when the library loads: five times slower on 2 cores without it
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        try:
            import tesserocr
        except ImportError as err:
            raise UnsupportedError(
                "OCR needs tesserocr: install remotehands[agent] (pip install tesserocr)"
            ) from err
        try:
            # AUTO's page layout: SPARSE_TEXT found nothing on a dark screen with a light band
            # of text, and was no faster or better on UI text (bench/bench_ocr.py)
            self._api = tesserocr.PyTessBaseAPI(
                path=tessdata_dir(), lang="eng", psm=tesserocr.PSM.AUTO
            )
        except RuntimeError as err:
            raise DeviceError(f"tesseract could not start: {err}") from err
        self._module = tesserocr
        self.name = f"tesseract {tesserocr.tesseract_version().split()[1]}"
        return self._api

    def read(
        self,
        frame: FrameArray,
        origin: tuple[int, int] = (0, 0),
        upscale: float | None = None,
        min_confidence: float = 0.0,
    ) -> OcrPage:
        """Recognise the text of ``frame`` (BGRX, the region at ``origin`` on the screen).

        Blocks for tens of milliseconds to seconds: call it in a worker thread.
        """
        started = time.perf_counter()
        height, width = int(frame.shape[0]), int(frame.shape[1])
        if upscale is None:
            upscale = AUTO_UPSCALE
        image = _grey(frame)
        if _dark_background(image):
            # Light text on a dark background (a terminal): tesseract reads dark on light, and
            # reads the rest only by trying each line again inverted, which cost 40 % more time
            # on a 400x300 region of terminal text (bench/bench_ai.py). Inverted once here, the
            # lines read at the first try; a light patch in it is still tried inverted.
            image = ImageOps.invert(image)
        if upscale != 1.0:
            size = (max(1, round(width * upscale)), max(1, round(height * upscale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
        with self._lock:
            api = self._ensure()
            tesserocr = self._module
            api.SetImage(image)
            api.Recognize()
            words: list[tuple[str, float, Bounds, bool]] = []
            iterator = api.GetIterator()
            level = tesserocr.RIL.WORD
            if iterator is not None:
                for item in tesserocr.iterate_level(iterator, level):
                    try:
                        text = (item.GetUTF8Text(level) or "").strip()
                    except RuntimeError:  # tesserocr's way of saying "an empty word"
                        continue
                    box = item.BoundingBox(level)
                    if not text or box is None:
                        continue
                    confidence = float(item.Confidence(level))
                    new_line = bool(item.IsAtBeginningOf(tesserocr.RIL.TEXTLINE))
                    words.append((text, confidence, self._box(box, upscale, origin), new_line))
            api.Clear()
        return _page(words, upscale, min_confidence, started)

    @staticmethod
    def _box(box: tuple[int, int, int, int], upscale: float, origin: tuple[int, int]) -> Bounds:
        left, top, right, bottom = box
        x0, y0 = int(left / upscale), int(top / upscale)
        x1, y1 = int(np.ceil(right / upscale)), int(np.ceil(bottom / upscale))
        return Bounds(
            x=origin[0] + x0, y=origin[1] + y0, width=max(1, x1 - x0), height=max(1, y1 - y0)
        )


DARK_SHARE: Final = 0.5
"""The share of dark pixels (below mid-grey) above which an image's background is dark."""


def _dark_background(image: Image.Image) -> bool:
    """Whether most of the grey ``image`` is darker than mid-grey (its background is dark)."""
    dark = image.histogram()[:128]
    return sum(dark) > DARK_SHARE * image.width * image.height


def _grey(frame: FrameArray) -> Image.Image:
    """The frame as an 8-bit grey image (tesseract binarises it itself)."""
    height, width = int(frame.shape[0]), int(frame.shape[1])
    data = np.ascontiguousarray(frame)
    return Image.frombuffer("RGB", (width, height), data, "raw", "BGRX", 0, 1).convert("L")


def _page(
    words: list[tuple[str, float, Bounds, bool]],
    upscale: float,
    min_confidence: float,
    started: float,
) -> OcrPage:
    kept: list[OcrWord] = []
    grouped: list[list[OcrWord]] = []
    line_starts = False  # a dropped word may have begun a line: the next kept one does
    for text, confidence, box, new_line in words:
        line_starts = line_starts or new_line
        if confidence < min_confidence:
            continue
        if line_starts or not grouped:
            grouped.append([])
        line_starts = False
        word = OcrWord(text=text, confidence=round(confidence, 1), box=box, line=len(grouped) - 1)
        grouped[-1].append(word)
        kept.append(word)
    lines = [
        OcrLine(
            text=" ".join(w.text for w in group),
            confidence=round(sum(w.confidence for w in group) / len(group), 1),
            box=_union([w.box for w in group]),
        )
        for group in grouped
        if group
    ]
    return OcrPage(
        words=kept,
        lines=lines,
        upscale=upscale,
        duration_ms=round((time.perf_counter() - started) * 1000),
    )


_ENGINE: OcrEngine | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> OcrEngine:
    """The agent's one recogniser (tesseract loads its model on the first :meth:`read`)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = OcrEngine()
        return _ENGINE
