"""A device's HTTP listener: its faces mounted side by side at the root.

Compatible clients expect their API at the root of an address, so the faces of one device share
one Starlette app: their routes are tried in the order the faces are listed, a request that
matches no route is answered by the face that owns it (the face with a route on that path for a
405, else the face with the longest prefix of it, else the first face) in that face's error
shape, and two faces that would answer the same method on the same path are refused when the
listener is built, with a :class:`ConfigError` naming both faces and the route.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute

from remotehands.agent.faces.base import Face
from remotehands.errors import ConfigError

__all__ = ["create_listener_app", "route_collisions"]

_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")
_SAMPLES = {"int": "1", "float": "1.5", "path": "x/y",
            "uuid": "00000000-0000-0000-0000-000000000000"}  # fmt: skip


def _kinds(route: BaseRoute) -> frozenset[str] | None:
    """The methods a route answers (``WEBSOCKET`` for a WebSocket route); None: all."""
    if isinstance(route, WebSocketRoute):
        return frozenset({"WEBSOCKET"})
    if isinstance(route, Route):
        return frozenset(route.methods) if route.methods else None
    return None


def _sample(route: BaseRoute) -> str | None:
    """A concrete path the route matches (each parameter replaced by a value of its type)."""
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    concrete = _PARAM.sub(lambda m: _SAMPLES.get(m.group(2) or "str", "x"), path)
    return concrete.rstrip("/") + "/x" if isinstance(route, Mount) else concrete


def _overlap(a: BaseRoute, b: BaseRoute) -> bool:
    kinds_a, kinds_b = _kinds(a), _kinds(b)
    if kinds_a is not None and kinds_b is not None and not kinds_a & kinds_b:
        return False
    for route, other in ((a, b), (b, a)):
        regex = getattr(route, "path_regex", None)
        sample = _sample(other)
        if regex is not None and sample is not None and regex.match(sample):
            return True
    return False


def _describe(route: BaseRoute) -> str:
    kinds = _kinds(route)
    methods = "ANY" if kinds is None else "/".join(sorted(kinds - {"HEAD"}) or kinds)
    return f"{methods} {getattr(route, 'path', route)!s}"


def route_collisions(faces: Sequence[Face]) -> list[str]:
    """Every pair of routes of two different faces that could answer the same request."""
    found = []
    for face_a, face_b in itertools.combinations(faces, 2):
        for a in face_a.routes:
            for b in face_b.routes:
                if _overlap(a, b):
                    found.append(
                        f"faces {face_a.name!r} and {face_b.name!r} both serve {_describe(a)}"
                        + (f" (as {_describe(b)})" if _describe(a) != _describe(b) else "")
                    )
    return found


def create_listener_app(faces: Sequence[Face], *, device: str = "this device") -> Starlette:
    """One Starlette app serving ``faces`` at the root; :class:`ConfigError` when two faces
    share a route or a name."""
    if not faces:
        raise ConfigError(f"{device} serves no face: list at least one in faces")
    names = [face.name for face in faces]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"{device} lists the face {twice[0]!r} twice: list each face once")
    collisions = route_collisions(faces)
    if collisions:
        raise ConfigError(
            f"{device}: {'; '.join(collisions)}: serve these faces on different devices' "
            "listeners, or drop one"
        )

    def owner(request: Request) -> Face:
        for face in faces:
            if any(route.matches(request.scope)[0] != Match.NONE for route in face.routes):
                return face
        path = request.url.path
        claims = [(len(prefix), -index) for index, face in enumerate(faces)
                  for prefix in face.prefixes if path.startswith(prefix)]  # fmt: skip
        return faces[-max(claims)[1]] if claims else faces[0]

    async def unrouted(request: Request, exc: Exception) -> Response:
        return await owner(request).error_handler(request, exc)

    routes = [route for face in faces for route in face.routes]
    return Starlette(routes=routes, exception_handlers={404: unrouted, 405: unrouted})
