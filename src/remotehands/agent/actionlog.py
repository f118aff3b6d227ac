"""The action log of a device: its recent actions, newest first (as the server's audit log),
secrets left out.

Typed text and clipboard contents are kept as their length and a keyed hash (a key of this
process), at any depth of a sequence (:func:`remotehands.protocol.masking.mask_params`).
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from datetime import UTC, datetime
from typing import Any

from remotehands.protocol.masking import HIDDEN_FIELDS, TEXT_FIELDS, mask_params
from remotehands.protocol.results import ActionLogEntry

__all__ = ["SECRET_FIELDS", "ActionLog"]

SECRET_FIELDS = TEXT_FIELDS | HIDDEN_FIELDS
"""Parameters the log shows as their length (text) or ``<hidden>``, never as they were."""


class ActionLog:
    """The recent actions of a device, with secrets and long texts left out."""

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[ActionLogEntry] = deque(maxlen=size)
        self._key = secrets.token_bytes(32)  # equal texts match within this process's log

    def add(self, action: str, params: dict[str, Any], result: str, duration_ms: float) -> None:
        """Remember one action."""
        shown = mask_params(params, self._key)
        self._entries.append(
            ActionLogEntry(
                timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                action=action,
                params=json.dumps(shown, default=str, ensure_ascii=False),
                result=result,
                duration_ms=round(duration_ms, 2),
            )
        )

    def entries(self, limit: int) -> list[ActionLogEntry]:
        """The ``limit`` newest entries, newest first (as ``audit`` lists the fleet's)."""
        return list(reversed(self._entries))[:limit]

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """:meth:`entries` in their wire form."""
        return [entry.model_dump() for entry in self.entries(limit)]
