"""The handler registry: each capability module registers its handlers against wire names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from remotehands.agent.context import ActionContext
from remotehands.protocol.actions import ACTIONS_BY_NAME

__all__ = ["HANDLERS", "Handler", "handles"]

Handler = Callable[[ActionContext, Any], Awaitable[BaseModel]]
"""Carries out one action: the device and the validated parameters in, the result model out."""

HANDLERS: dict[str, Handler] = {}
"""Wire name -> its handler; filled as :mod:`remotehands.agent.capabilities` imports."""

H = TypeVar("H", bound=Handler)


def handles(*names: str) -> Callable[[H], H]:
    """Register the decorated handler for the actions ``names`` (wire names of the table)."""

    def register(handler: H) -> H:
        for name in names:
            if name not in ACTIONS_BY_NAME:
                raise LookupError(f"{handler.__qualname__} handles {name!r}: no such action")
            if name in HANDLERS:
                raise LookupError(f"{name} has two handlers: {HANDLERS[name].__qualname__} and "
                                  f"{handler.__qualname__}")  # fmt: skip
            HANDLERS[name] = handler
        return handler

    return register
