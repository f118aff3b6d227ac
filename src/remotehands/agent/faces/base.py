"""What a face is: an HTTP API of one device, in the shape some client expects.

A face is a name, its routes (Starlette ``Route`` and ``WebSocketRoute`` objects, each doing its
own authentication and answering its own error shapes) and the handler that answers a request
that matched none of its routes (404) or none of its methods (405), in that same shape. A
device's listener mounts several faces at its root (:mod:`remotehands.agent.faces.listener`);
faces are built by name from :data:`FACES`, a lazy table as the drivers' is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from remotehands.agent.auth import TokenStore
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.framesource import FrameSources
from remotehands.agent.plugins import load_object
from remotehands.errors import ConfigError

__all__ = ["FACES", "ErrorHandler", "Face", "FaceContext", "FaceFactory", "make_face"]

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
"""Answers an unrouted request (``exc`` a Starlette ``HTTPException`` of 404 or 405)."""


@dataclass(frozen=True)
class Face:
    """One HTTP API of a device, ready to be mounted on its listener."""

    name: str
    routes: Sequence[BaseRoute]
    error_handler: ErrorHandler
    """Answers the requests routed to this face that match no route (404) or no method (405)."""
    prefixes: tuple[str, ...] = ()
    """Path prefixes this face owns: a request that matches no route of any face is answered
    by the face whose prefix is the longest match (``/api/``), else by the device's first
    face."""


@dataclass(frozen=True)
class FaceContext:
    """What a face is built from: the device it fronts and the device's logins."""

    device: str
    """The device's name."""
    dispatcher: Dispatcher
    """Runs actions on the device's driver, under its lock."""
    tokens: TokenStore
    """The device's password check and bearer tokens, shared by its faces."""
    frames: FrameSources | None = None
    """The device's live frames (one source per screen, shared with its link); None without a
    screen."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """This face's own settings (``[devices.face_settings.NAME]`` of the agent's config, or the
    face's command-line options), which the face checks with a model of its own."""


FaceFactory = Callable[[FaceContext], Face]

# face name -> import string of its factory; imported only when a device serves it.
FACES: dict[str, str] = {
    "native": "remotehands.agent.faces.native:native_face",
    "tinypilot": "remotehands.agent.faces.tinypilot:tinypilot_face",
    "pikvm": "remotehands.agent.faces.pikvm:pikvm_face",
    "openctrol": "remotehands.agent.faces.openctrol:openctrol_face",
}


def make_face(name: str, context: FaceContext) -> Face:
    """Build the face ``name`` (a name of :data:`FACES`, or ``package.module:factory``) for a
    device; an unknown face is a :class:`ConfigError` listing the known ones."""
    target = FACES.get(name, name if ":" in name else None)
    if target is None:
        raise ConfigError(f"unknown face {name!r}: choose among {', '.join(sorted(FACES))}")
    factory: Any = load_object(target, f"the {name} face")
    face = factory(context)
    if not isinstance(face, Face):
        raise ConfigError(f"{target} did not build a Face (it gave {type(face).__name__})")
    return face
