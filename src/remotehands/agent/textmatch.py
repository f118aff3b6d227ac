"""Finding a phrase among the words OCR read: case-insensitive and fuzzy, with its box.

OCR misreads a letter here and there (``Cance1``), so a phrase matches a run of words of one
line whose text is alike enough (:class:`difflib.SequenceMatcher` ratio, 0..1) once both are
lower-cased and their spaces squeezed. Runs one word shorter and longer than the phrase are
tried too, as OCR splits and joins words. Overlapping runs keep only the best.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from remotehands.protocol.models import Bounds
from remotehands.protocol.results import OcrWord, TextMatch

__all__ = ["closest", "find_phrase", "normalise"]


def normalise(text: str) -> str:
    """Lower-case with runs of white space made one space."""
    return " ".join(text.casefold().split())


def _union(boxes: Sequence[Bounds]) -> Bounds:
    left = min(b.x for b in boxes)
    top = min(b.y for b in boxes)
    right = max(b.x + b.width for b in boxes)
    bottom = max(b.y + b.height for b in boxes)
    return Bounds(x=left, y=top, width=right - left, height=bottom - top)


def _candidates(words: Sequence[OcrWord], size: int) -> list[TextMatch]:
    """Every run of 1 to ``size + 1`` words within a line, scored later."""
    by_line: dict[int, list[OcrWord]] = {}
    for word in words:
        by_line.setdefault(word.line, []).append(word)
    runs: list[TextMatch] = []
    for line in by_line.values():
        for length in range(max(1, size - 1), size + 2):
            for start in range(0, len(line) - length + 1):
                run = line[start : start + length]
                box = _union([w.box for w in run])
                runs.append(
                    TextMatch(
                        text=" ".join(w.text for w in run),
                        score=0.0,
                        box=box,
                        x=box.x + box.width // 2,
                        y=box.y + box.height // 2,
                        confidence=round(min(w.confidence for w in run), 1),
                    )
                )
    return runs


def _score(phrase: str, text: str) -> float:
    seen = normalise(text)
    if seen == phrase:
        return 1.0
    return round(difflib.SequenceMatcher(None, phrase, seen, autojunk=False).ratio(), 3)


def _overlap(a: Bounds, b: Bounds) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def _ranked(phrase: str, words: Sequence[OcrWord]) -> list[TextMatch]:
    wanted = normalise(phrase)
    size = len(wanted.split()) or 1
    scored = [
        m.model_copy(update={"score": _score(wanted, m.text)}) for m in _candidates(words, size)
    ]
    # best first; among equals the shorter run (no stray neighbour) and then reading order
    scored.sort(key=lambda m: (-m.score, len(m.text), m.box.y, m.box.x))
    kept: list[TextMatch] = []
    for match in scored:
        if not any(_overlap(match.box, k.box) for k in kept):
            kept.append(match)
    return kept


def find_phrase(phrase: str, words: Sequence[OcrWord], min_score: float) -> list[TextMatch]:
    """The runs of words that match ``phrase`` at least ``min_score`` alike, in reading order
    (top to bottom, then left to right), none overlapping another."""
    found = [m for m in _ranked(phrase, words) if m.score >= min_score]
    found.sort(key=lambda m: (m.box.y // max(1, m.box.height), m.box.x))
    return found


def closest(phrase: str, words: Sequence[OcrWord], count: int = 3) -> list[TextMatch]:
    """The ``count`` runs most like ``phrase`` whatever their score: what to show when it is
    not found."""
    return _ranked(phrase, words)[:count]
