"""kvmd's ``/api/log`` on a remotehands device: the device's action log as journal lines.

kvmd streams the journal of its own services, one record a line,
``[YYYY-mm-dd HH:MM:SS <unit>.service] --- <message>\\r\\n``, in local time. The face streams
the device's action log (the actions every face and the agent link ran, secrets masked) in the
same lines, under the unit ``remotehands-agent.service``. ``seek`` is kvmd's: 0 is everything
kept, more is the last ``seek`` seconds; ``follow`` goes on with new records, looking once a
second as kvmd's reader does, until the client leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Final

from remotehands.agent.actionlog import ActionLog
from remotehands.protocol.results import ActionLogEntry

__all__ = ["UNIT", "log_lines", "record"]

UNIT: Final = "remotehands-agent.service"
FOLLOW_S: Final = 1.0
"""How often a followed log looks for new records."""
_KEPT: Final = 100_000
"""More than any action log keeps: ``entries`` of all of them."""


def _when(entry: ActionLogEntry) -> datetime:
    return datetime.fromisoformat(entry.timestamp.replace("Z", "+00:00")).astimezone()


def record(entry: ActionLogEntry) -> bytes:
    """One action as kvmd writes one journal record."""
    result = "ok" if entry.result == "ok" else f"failed: {entry.result}"
    message = f"{entry.action} {entry.params} --- {result} ({entry.duration_ms:g} ms)"
    message = " ".join(message.split())  # one record, one line
    stamp = _when(entry).strftime("%Y-%m-%d %H:%M:%S")
    return f"[{stamp} {UNIT}] --- {message}\r\n".encode()


def _oldest_first(log: ActionLog) -> list[ActionLogEntry]:
    return list(reversed(log.entries(_KEPT)))


def _after(entries: list[ActionLogEntry], last: ActionLogEntry | None) -> list[ActionLogEntry]:
    """The entries newer than ``last`` (all of them when ``last`` has left the log)."""
    if last is None:
        return entries
    for index in range(len(entries) - 1, -1, -1):
        if entries[index] is last:
            return entries[index + 1 :]
    return entries


async def log_lines(log: ActionLog, seek: int, follow: bool) -> AsyncIterator[bytes]:
    """The lines of ``GET /api/log?seek=&follow=``."""
    entries = _oldest_first(log)
    last = entries[-1] if entries else None
    if seek > 0:
        since = time.time() - seek
        entries = [e for e in entries if _when(e).timestamp() >= since]
    for entry in entries:
        yield record(entry)
    while follow:
        await asyncio.sleep(FOLLOW_S)
        entries = _oldest_first(log)
        for entry in _after(entries, last):
            yield record(entry)
        if entries:
            last = entries[-1]
