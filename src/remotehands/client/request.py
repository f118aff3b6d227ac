"""Requests as data: what to send for an action, built from the :data:`ACTIONS` table.

Nothing here does I/O, so the sync and the async clients share every line of it: an SDK method
names an action and its parameters, :func:`action_request` checks them against the action's
pydantic model and turns them into a :class:`Request` (method, path with its path parameters
filled in, query string for ``GET``, JSON body otherwise), and the client only sends it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import pydantic

from remotehands.client.actions import wire_name
from remotehands.client.results import as_result, screenshot_result, with_images
from remotehands.client.uploads import UploadBody
from remotehands.errors import ValidationError
from remotehands.protocol.actions import (
    ACTIONS,
    ACTIONS_BY_NAME,
    ActionSpec,
    parse_window_id,
    wait_seconds,
)
from remotehands.protocol.validation import describe_validation

__all__ = [
    "Request",
    "action_request",
    "find_action",
    "path_segment",
    "validate_params",
    "wait_seconds",
]

_SCREENSHOTS = frozenset({"screenshot", "screenshot.region"})
_WITH_IMAGES = frozenset({"screenshots", "sequence", "act"})


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of the SDK, and how to read its answer.

    ``extra_s`` is added to the client's timeout (an action that waits up to ``timeout_ms`` must
    not be cut off by the HTTP timeout); ``parse`` turns the decoded JSON into the result;
    ``auth`` is false for the requests that log in; ``content`` is the payload of a streamed
    action, sent as the raw body.
    """

    method: str
    path: str
    query: Mapping[str, Any] | None = None
    json: Any = None
    extra_s: float = 0.0
    parse: Callable[[Any], Any] = as_result
    auth: bool = True
    content: UploadBody | None = None

    def under(self, prefix: str) -> Request:
        """The same request below ``prefix`` (a device's ``/v1/devices/{id}`` on a server)."""
        return dataclasses.replace(self, path=prefix + self.path)


def find_action(name: str) -> ActionSpec:
    """The action called ``name``: its wire name (``mouse.click``) or its SDK/CLI name
    (``click``, ``double_click``, ``double-click``)."""
    spec = ACTIONS_BY_NAME.get(name)
    if spec is not None:
        return spec
    wire = wire_name(name)
    if wire is not None:
        return ACTIONS_BY_NAME[wire]
    known = ", ".join(a.name for a in ACTIONS)
    raise ValidationError(f"unknown action {name!r}; the actions are: {known}")


def validate_params(spec: ActionSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the action's model; return the JSON form of what was given.

    ``None`` means "not given" (every optional parameter defaults to ``None`` or to a value the
    agent fills in), and defaults are left to the agent, so only what the caller chose is sent.
    """
    given = {k: v for k, v in params.items() if v is not None}
    try:
        model = spec.params.model_validate(given)
    except pydantic.ValidationError as err:
        raise ValidationError(describe_validation(err, spec.name)) from err
    values: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return values


def path_segment(value: object) -> str:
    """``value`` quoted to be one path segment (a name may hold ``/`` or spaces)."""
    return quote(str(value), safe="")


def action_request(name: str, params: Mapping[str, Any]) -> Request:
    """The request that carries out action ``name`` with ``params`` on a native API.

    Raises :class:`ValidationError` for an unknown action or parameters its model refuses. A
    streamed action (``media.upload``) takes its payload as the parameter ``body``, an
    :class:`~remotehands.client.uploads.UploadBody`.
    """
    spec = find_action(name)
    body = None
    if spec.streamed:
        params = dict(params)
        body = params.pop("body", None)
        if not isinstance(body, UploadBody):
            raise ValidationError(f"{spec.name} streams a file: give it as body=UploadBody(...)")
        params["size"] = body.size
    values = validate_params(spec, params)
    path = spec.path
    for key in spec.path_params:
        value = values.pop(key, None)
        if value is None:
            raise ValidationError(f"{spec.name} needs {key!r} (it is part of {spec.path})")
        if key == "id":
            # Window ids: 0x4400003 and 71303171 are one window; paths carry the number.
            try:
                value = parse_window_id(value)
            except ValueError as err:
                raise ValidationError(f"{spec.name}: {err}") from err
        path = path.replace("{" + key + "}", path_segment(value))
    parse: Callable[[Any], Any] = as_result
    if spec.name in _SCREENSHOTS:
        parse = screenshot_result
    elif spec.name in _WITH_IMAGES:
        parse = with_images
    extra_s = wait_seconds(values)
    if body is not None:
        values.pop("size", None)  # the body's Content-Length says it
        return Request(spec.method, path, query=values or None, content=body, parse=parse)
    if spec.method == "GET":
        return Request("GET", path, query=values, extra_s=extra_s, parse=parse)
    if spec.method == "DELETE":
        return Request("DELETE", path, json=values or None, extra_s=extra_s, parse=parse)
    return Request(spec.method, path, json=values, extra_s=extra_s, parse=parse)
