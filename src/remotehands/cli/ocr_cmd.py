"""Text on the screen, read by the agent: ``remotehands ocr``, ``find-text``, ``click-text`` and
``wait-for-text`` (also ``wait-text``)::

    remotehands ocr web-1 --region 0,0,800,600
    remotehands click-text web-1 "OK"
    remotehands wait-text web-1 "Done" --timeout-ms 20000

The commands join :data:`remotehands.cli.actions_cmd.VERB_COMMANDS` when that module loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from remotehands.cli.actions_cmd import BUTTONS, _region, _text_arg, device_command
from remotehands.cli.output import Column, emit, table
from remotehands.client import ActionMethods
from remotehands.protocol.models import Button

__all__ = ["click_text", "find_text", "ocr", "wait_for_text"]

Body = Callable[..., None]


def _box(row: Any) -> str:
    box = row.get("box") or {}
    return f"{box.get('x')},{box.get('y')} {box.get('width')}x{box.get('height')}"


_LINE_COLUMNS: list[Column] = [("BOX", _box), ("CONF", "confidence"), ("TEXT", "text")]
_MATCH_COLUMNS: list[Column] = [
    ("#", "index"),
    ("SCORE", "score"),
    ("CENTRE", lambda m: f"{m.get('x')},{m.get('y')}"),
    ("BOX", _box),
    ("TEXT", "text"),
]


def _area(body: Body) -> Body:
    """``--region`` and ``--min-score`` of the text commands."""
    body = click.option(
        "--min-score",
        type=click.FloatRange(0, 1),
        help="How alike the text read must be to the phrase, 0-1 (default 0.8).",
    )(body)
    return click.option(
        "--region", metavar="X,Y,W,H", help="Read only this rectangle (native pixels)."
    )(body)


def _where(region: str | None) -> tuple[int, int, int, int] | None:
    return _region(region) if region else None


@device_command("ocr", "[DEVICE]", counts=(0,))
@click.option("--region", metavar="X,Y,W,H", help="Read only this rectangle (native pixels).")
@click.option("--upscale", type=click.FloatRange(1, 4), help="Scale up first (default: auto).")
@click.option("--min-confidence", type=click.FloatRange(0, 100), help="Drop less certain words.")
@click.option("--words", is_flag=True, help="Print every word with its box, not the lines.")
def ocr(
    hands: ActionMethods[Any],
    rest: list[str],
    region: str | None,
    upscale: float | None,
    min_confidence: float | None,
    words: bool,
) -> None:
    """Read the text on the screen (or a region): lines with their boxes and confidence."""
    result = hands.ocr(region=_where(region), upscale=upscale, min_confidence=min_confidence)
    rows = result.get("words" if words else "lines", [])
    emit(result, lambda: table(rows, _LINE_COLUMNS, "no text found"))


@device_command("find-text", "[DEVICE] TEXT", counts=(1,))
@_area
def find_text(
    hands: ActionMethods[Any], rest: list[str], region: str | None, min_score: float | None
) -> None:
    """Find TEXT on the screen (case-insensitive, fuzzy): each match with its box and centre.
    Exits 4 (not found) with the closest text seen when it is not there."""
    result = hands.find_text(_text_arg(rest[0]), region=_where(region), min_score=min_score)
    rows = [{"index": i, **m} for i, m in enumerate(result.get("matches", []))]
    emit(result, lambda: table(rows, _MATCH_COLUMNS, "not found"))


@device_command("click-text", "[DEVICE] TEXT", counts=(1,))
@click.option("--index", type=click.IntRange(min=0), help="Which match, when there are several.")
@click.option("--button", type=click.Choice(BUTTONS), default="left", show_default=True)
@click.option("--double", is_flag=True, help="Double-click.")
@_area
def click_text(
    hands: ActionMethods[Any],
    rest: list[str],
    index: int | None,
    button: Button,
    double: bool,
    region: str | None,
    min_score: float | None,
) -> None:
    """Find TEXT on the screen and click the centre of it. Several matches are refused unless
    --index picks one (find-text lists them)."""
    result = hands.click_text(
        _text_arg(rest[0]),
        index=index,
        button=button,
        double=double or None,
        region=_where(region),
        min_score=min_score,
    )
    clicked = result.get("clicked", {})
    emit(result, f"clicked {clicked.get('text')!r} at {clicked.get('x')},{clicked.get('y')}")


@device_command("wait-for-text", "[DEVICE] TEXT", counts=(1,))
@click.option("--gone", is_flag=True, help="Wait until the text is no longer there.")
@click.option("--timeout-ms", type=click.IntRange(0, 600_000), help="Give up after (10000).")
@_area
def wait_for_text(
    hands: ActionMethods[Any],
    rest: list[str],
    gone: bool,
    timeout_ms: int | None,
    region: str | None,
    min_score: float | None,
) -> None:
    """Wait until TEXT is on the screen (or with --gone until it is not); exits 9 (timeout)
    when it does not happen in time."""
    text = _text_arg(rest[0])
    result = hands.wait_for_text(
        text, gone=gone or None, timeout_ms=timeout_ms, region=_where(region), min_score=min_score
    )
    state = "there" if result.get("present") else "gone"
    emit(result, f"{text!r} is {state} after {result.get('waited_ms')} ms")
