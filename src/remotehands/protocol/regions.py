"""Region lists of the wire: the ``ignore_region``/``watch_region`` query strings."""

from __future__ import annotations

import json
from typing import Any, Final

import pydantic

from remotehands.errors import ValidationError
from remotehands.protocol.models import Bounds
from remotehands.protocol.validation import describe_errors

__all__ = ["MAX_REGIONS", "parse_regions"]

MAX_REGIONS: Final = 64
"""How many regions one ``ignore_region``/``watch_region`` string may list."""

_REGION_HELP: Final = (
    "expected 'x,y,width,height' in integers, a JSON object "
    '{"x":..,"y":..,"width":..,"height":..} or a JSON list of them, several separated by ";"'
)


def parse_regions(text: str | None) -> list[Bounds]:
    """The regions of an ``ignore_region``/``watch_region`` query string.

    Accepts ``"x,y,width,height"``, a JSON object ``{"x":..,"y":..,"width":..,"height":..}``
    or a JSON list of such objects, several separated by ``;``. ``None`` or blank text gives
    ``[]``. Anything else raises :class:`~remotehands.errors.ValidationError` naming the part.
    """
    if text is None:
        return []
    regions: list[Bounds] = []
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            continue
        if part[0] in "{[":
            regions.extend(_json_regions(part))
        else:
            regions.append(_csv_region(part))
        if len(regions) > MAX_REGIONS:
            raise ValidationError(f"too many regions: at most {MAX_REGIONS}")
    return regions


def _csv_region(part: str) -> Bounds:
    fields = [field.strip() for field in part.split(",")]
    if len(fields) != 4:
        raise ValidationError(f"bad region {part!r}: {_REGION_HELP}")
    try:
        x, y, w, h = (int(field, 10) for field in fields)
    except ValueError as err:
        raise ValidationError(f"bad region {part!r}: {_REGION_HELP}") from err
    if w <= 0 or h <= 0:
        raise ValidationError(f"bad region {part!r}: width and height must be positive")
    return Bounds(x=x, y=y, width=w, height=h)


def _json_regions(part: str) -> list[Bounds]:
    try:
        value: Any = json.loads(part)
    except ValueError as err:
        raise ValidationError(f"bad region {part!r}: not valid JSON ({err})") from err
    items = value if isinstance(value, list) else [value]
    regions: list[Bounds] = []
    for item in items:
        try:
            regions.append(Bounds.model_validate(item, strict=True))
        except pydantic.ValidationError as err:
            problems = describe_errors(err.errors(), whole="region")
            raise ValidationError(f"bad region {part!r}: {problems}") from err
    return regions
