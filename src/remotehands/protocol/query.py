"""Action parameters from a query string: the one parser every HTTP edge uses."""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

if typing.TYPE_CHECKING:
    from remotehands.protocol.actions import ActionSpec

__all__ = ["list_fields", "params_from_query"]


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return False


@functools.cache
def list_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that take a list (a query key repeated gives all its values)."""
    return frozenset(name for name, info in model.model_fields.items() if _is_list(info.annotation))


def params_from_query(spec: ActionSpec, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The query's ``(key, value)`` pairs as parameters of ``spec``'s action: a repeated key
    gives a list for list fields (such as ``upload_header``), its last value otherwise. Values
    stay text; the parameter model converts them."""
    lists = list_fields(spec.params)
    params: dict[str, Any] = {}
    for key, value in pairs:
        if key in lists:
            params.setdefault(key, []).append(value)
        else:
            params[key] = value
    return params
