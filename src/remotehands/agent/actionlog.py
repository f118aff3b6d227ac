"""The action log of a device: its recent actions, newest first (as the server's audit log),
secrets left out.

Typed text and clipboard contents are kept as their length and a keyed hash (a key of this
process), at any depth of a sequence (:func:`remotehands.protocol.masking.mask_params`).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from remotehands.protocol.masking import HIDDEN_FIELDS, TEXT_FIELDS, mask_params
from remotehands.protocol.results import ActionLogEntry

__all__ = ["SECRET_FIELDS", "ActionLog"]

SECRET_FIELDS = TEXT_FIELDS | HIDDEN_FIELDS
"""Parameters the log shows as their length (text) or ``<hidden>``, never as they were."""


_Kept = tuple[float, str, Any, str, float]
"""An entry as kept: when (epoch seconds), action, masked parameters, result, milliseconds."""


class ActionLog:
    """The recent actions of a device, with secrets and long texts left out."""

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[_Kept] = deque(maxlen=size)
        self._key = secrets.token_bytes(32)  # equal texts match within this process's log

    def add(self, action: str, params: dict[str, Any], result: str, duration_ms: float) -> None:
        """Remember one action. Secrets are masked now; the entry is formatted when read (every
        action is logged, few logs are read: the formatting stays off the action's time)."""
        shown = mask_params(params, self._key)
        self._entries.append((time.time(), action, shown, result, duration_ms))

    def entries(self, limit: int) -> list[ActionLogEntry]:
        """The ``limit`` newest entries, newest first (as ``audit`` lists the fleet's)."""
        newest = list(itertools.islice(reversed(self._entries), max(0, limit)))
        return [_entry(*kept) for kept in newest]

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """:meth:`entries` in their wire form."""
        return [entry.model_dump() for entry in self.entries(limit)]


def _entry(at: float, action: str, shown: Any, result: str, duration_ms: float) -> ActionLogEntry:
    return ActionLogEntry(
        timestamp=datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        action=action,
        params=json.dumps(shown, default=str, ensure_ascii=False),
        result=result,
        duration_ms=round(duration_ms, 2),
    )
