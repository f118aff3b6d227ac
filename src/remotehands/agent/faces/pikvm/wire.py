"""kvmd's wire: the JSON envelope, its error names and statuses, and its parameter validators.

Every answer of the face goes through here, so that it is the bytes kvmd sends: the envelope is
``{"ok": bool, "result": {...}}`` with sorted keys and an indent of 4, errors carry the name of
kvmd's exception class (``ValidatorError``, ``AtxIsBusyError``...) and its message, and the
validators raise kvmd's own messages (``The argument 'abc' is not a valid bool ...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from starlette.responses import Response

__all__ = [
    "JSON_TYPE",
    "KvmdError",
    "error_response",
    "json_response",
    "plain_error",
    "valid_bool",
    "valid_int",
    "valid_number",
    "valid_string_list",
]

JSON_TYPE: Final = "application/json; charset=utf-8"


class KvmdError(Exception):
    """An error kvmd answers in its envelope: ``name`` is kvmd's exception class name."""

    def __init__(self, name: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.status = status

    @classmethod
    def validator(cls, message: str) -> KvmdError:
        """A ``ValidatorError`` (400): a bad query or form value."""
        return cls("ValidatorError", message, 400)


def _dumps(ok: bool, result: Mapping[str, Any]) -> bytes:
    return json.dumps({"ok": ok, "result": result}, sort_keys=True, indent=4).encode()


def json_response(
    result: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """kvmd's success envelope; ``result`` is ``{}`` when there is nothing to say."""
    return Response(
        _dumps(status == 200, dict(result or {})),
        status_code=status,
        media_type=JSON_TYPE,
        headers=headers,
    )


def error_response(err: KvmdError) -> Response:
    """kvmd's error envelope: ``{"error": <class name>, "error_msg": <message>}``."""
    body = _dumps(False, {"error": err.name, "error_msg": err.message})
    return Response(body, status_code=err.status, media_type=JSON_TYPE)


def plain_error(status: int) -> Response:
    """aiohttp's own plain answers, without an envelope: an unknown route (404), a wrong method
    (405), a failure kvmd did not expect (500)."""
    text = {
        404: "404: Not Found",
        405: "405: Method Not Allowed",
        500: "500 Internal Server Error\n\nServer got itself in trouble",
    }[status]
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


def _argument(arg: Any, hide: bool = False) -> str:
    if hide:
        return " "
    return f" {arg!r} " if isinstance(arg, str | bytes) else f" '{arg}' "


def raise_error(arg: Any, name: str, hide: bool = False) -> KvmdError:
    """kvmd's ``The argument 'x' is not a valid <name>`` error."""
    return KvmdError.validator(f"The argument{_argument(arg, hide)}is not a valid {name}")


def raw_limit(arg: Any, limit: int) -> None:
    """kvmd caps the raw length of every value before it looks at it."""
    if limit > 0 and len(str(arg)) > limit:
        raise KvmdError.validator("RAW limit exceed")


def not_none_string(arg: Any, name: str, strip: bool = True) -> str:
    """The value as a string; ``None`` (a missing parameter) is kvmd's "None argument" error."""
    if arg is None:
        raise KvmdError.validator(f"None argument is not a valid {name}")
    text = str(arg)
    return text.strip() if strip else text


_TRUE: Final = ("1", "true", "yes")
_FALSE: Final = ("0", "false", "no")
_BOOL_NAME: Final = f"bool ({list(_TRUE)!r} or {list(_FALSE)!r})"


def valid_bool(arg: Any) -> bool:
    """``1|true|yes`` / ``0|false|no``, case-insensitive."""
    raw_limit(arg, 16)
    if arg is not None and not str(arg).strip():
        arg = None
    text = not_none_string(arg, _BOOL_NAME).lower()
    if text not in _TRUE + _FALSE:
        raise raise_error(text, _BOOL_NAME)
    return text in _TRUE


def valid_number(
    arg: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    kind: type = int,
    name: str = "",
    limit: int = 16,
) -> int | float:
    """A decimal number (``0x`` hex for integers) within ``lo..hi``, in kvmd's words."""
    raw_limit(arg, limit)
    name = name or kind.__name__
    if arg is not None and not str(arg).strip():
        arg = None
    text = not_none_string(arg, name)
    try:
        if kind is int:
            value: int | float = int(text[2:], 16) if text.startswith(("0x", "0X")) else int(text)
        else:
            value = float(text)
    except ValueError:
        raise raise_error(text, name) from None
    if lo is not None and value < lo:
        raise KvmdError.validator(
            f"The argument '{value}' must be {name} and greater or equial than {lo}"
        )
    if hi is not None and value > hi:
        raise KvmdError.validator(
            f"The argument '{value}' must be {name} and lesser or equal then {hi}"
        )
    return value


def valid_int(arg: Any, *, lo: int | None = None, hi: int | None = None, name: str = "") -> int:
    """An integer, as :func:`valid_number`."""
    return int(valid_number(arg, lo=lo, hi=hi, name=name))


def valid_string_list(arg: Any, name: str = "string list", limit: int = 4096) -> list[str]:
    """A list split on commas, tabs and spaces (empty items dropped)."""
    raw_limit(arg, limit)
    text = not_none_string(arg, name)
    return [item for item in re.split(r"[,\t ]+", text) if item]


def check_in(
    arg: Any,
    name: str,
    variants: Sequence[str] | Mapping[str, Any],
    lower: bool = True,
    limit: int = 16,
) -> str:
    """A string among ``variants`` (lowercased first unless ``lower`` is false)."""
    raw_limit(arg, limit)
    text = not_none_string(arg, name)
    if lower:
        text = text.lower()
    if text not in variants:
        raise raise_error(text, name)
    return text
