"""The server's wall clock: aware UTC datetimes, injectable for tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utc_now"]

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    """The current time, aware UTC: the default :data:`Clock`."""
    return datetime.now(UTC)
