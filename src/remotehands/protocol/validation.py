"""The one formatter of pydantic errors: what every edge says about parameters it refuses.

Validation happens once per edge (an HTTP face, the agent link, the server's routes, the SDK),
against the models of :mod:`remotehands.protocol.params`; each edge words the failure with
:func:`describe_validation`, so a caller reads the same sentence wherever it was refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import pydantic

from remotehands.errors import ValidationError

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "check_int_range",
    "describe_errors",
    "describe_validation",
    "validated",
]

M = TypeVar("M", bound=pydantic.BaseModel)


def describe_errors(errors: Iterable[Mapping[str, Any]], *, whole: str = "body") -> str:
    """``where: what`` for each pydantic error, joined with ``"; "``; ``where`` is the dotted
    path of the field, or ``whole`` for an error about the whole object."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ())) or whole
        if error.get("type") == "extra_forbidden":
            message = "unknown parameter"
        else:
            message = str(error.get("msg", "invalid value"))
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or f"{whole}: invalid value"


def describe_validation(err: pydantic.ValidationError, what: str) -> str:
    """One line naming each bad field of ``what`` (an action's name) and what is wrong."""
    return f"invalid parameters for {what}: {describe_errors(err.errors())}"


def validated(model: type[M], values: Any, what: str) -> M:
    """``values`` as ``model``; a :class:`~remotehands.errors.ValidationError` worded by
    :func:`describe_validation` when they do not fit."""
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as err:
        raise ValidationError(describe_validation(err, what)) from err


INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
"""The integers the wire carries: JSON encoders (orjson) and databases stop at 64 bits."""


def check_int_range(value: Any, what: str, where: str = "") -> None:
    """Raise :class:`~remotehands.errors.ValidationError` naming the first integer in
    ``value`` (at any depth) outside :data:`INT_MIN`-:data:`INT_MAX`, which no peer could
    decode; ``what`` names the action."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValidationError(
                f"invalid parameters for {what}: {where or 'value'}: {value} is out of range "
                f"(integers are {INT_MIN} to {INT_MAX})"
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_int_range(item, what, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_int_range(item, what, f"{where}.{index}" if where else str(index))
