"""JSON forms of action results.

Drivers and the agent return results that may hold raw ``bytes`` (images). On the agent link they
travel as binary blobs (see :mod:`remotehands.protocol.link`); on HTTP faces they are base64
strings, as the desktopkit API has them. This module is the one place that conversion happens.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with every ``bytes`` turned into base64 text and datetimes into ISO 8601 UTC."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value
