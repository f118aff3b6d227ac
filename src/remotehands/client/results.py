"""What the SDK returns: JSON objects readable as attributes, and screenshots with their bytes.

The HTTP APIs carry images as base64 text inside JSON; this module decodes them, so a caller
always gets ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel

from remotehands.errors import DeviceError, ValidationError
from remotehands.protocol.actions import ACTIONS_BY_NAME, by_verb

__all__ = [
    "Result",
    "Screenshot",
    "as_model",
    "as_result",
    "screenshot_result",
    "unwrap",
    "with_images",
]


class Result(dict[str, Any]):
    """A JSON object from an API; its keys read as attributes too (``pos.x`` is ``pos["x"]``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class Screenshot(Result):
    """A screenshot answer: ``image`` holds the encoded image (JPEG, PNG or WebP bytes), next to
    ``width``, ``height`` and whatever else the device reported (``stable``, ``waited_ms``...)."""

    @property
    def image(self) -> bytes:
        """The image bytes; :class:`ValidationError` when the request asked for no inline image."""
        image = self.get("image")
        if not isinstance(image, bytes):
            raise ValidationError(
                "this screenshot has no inline image (upload_include_inline was false)"
            )
        return image

    def save(self, path: str | Path) -> Path:
        """Write the image to ``path`` and return it."""
        target = Path(path)
        target.write_bytes(self.image)
        return target

    def __repr__(self) -> str:
        shown = {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in self.items()}
        return f"Screenshot({shown})"


def as_result(body: Any) -> Any:
    """JSON objects as :class:`Result`, at every depth; everything else as it came."""
    if isinstance(body, dict):
        return Result({k: as_result(v) for k, v in body.items()})
    if isinstance(body, list):
        return [as_result(v) for v in body]
    return body


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise DeviceError(f"the answer held an image that is not valid base64: {err}") from err


def _images(body: Any) -> Any:
    if isinstance(body, dict):
        return Result(
            {
                k: _decode(v) if k == "image" and isinstance(v, str) else _images(v)
                for k, v in body.items()
            }
        )
    if isinstance(body, list):
        return [_images(v) for v in body]
    return body


def with_images(body: Any) -> Any:
    """:func:`as_result`, with every ``"image"`` field decoded from base64 to bytes."""
    return _images(body)


def screenshot_result(body: Any) -> Screenshot:
    """A screenshot answer as :class:`Screenshot`."""
    if not isinstance(body, dict):
        raise DeviceError(f"a screenshot answer must be a JSON object, got {type(body).__name__}")
    decoded: Result = _images(body)
    return Screenshot(decoded)


def unwrap(key: str) -> Callable[[Any], Any]:
    """A parser for list answers that come wrapped (``{"devices": [...]}``) or bare; a wrapper
    under another name is accepted when it holds a single list."""

    def parse(body: Any) -> Any:
        if isinstance(body, dict):
            if key in body:
                body = body[key]
            else:
                lists = [v for v in body.values() if isinstance(v, list)]
                if len(lists) == 1:
                    body = lists[0]
        return with_images(body)

    return parse


_WITH_IMAGES = frozenset({"screenshot", "screenshot.region", "screenshots", "sequence", "act"})
"""The actions whose answers carry images (an ``image`` elsewhere, a drive's, is a name)."""


def as_model(action: str, body: Any) -> BaseModel:
    """The JSON answer of ``action`` (a wire name or an SDK name; images as base64) as that
    action's result model (:attr:`remotehands.protocol.actions.ActionSpec.result`), for code
    that wants shapes rather than dicts. :class:`DeviceError` when the answer does not fit."""
    spec = ACTIONS_BY_NAME.get(action) or by_verb(action)
    if spec is None:
        raise ValidationError(f"unknown action {action!r}")
    try:
        return spec.result.model_validate(_images(body) if spec.name in _WITH_IMAGES else body)
    except pydantic.ValidationError as err:
        raise DeviceError(
            f"the answer to {spec.name} is not a {spec.result.__name__}: {err}"
        ) from err
