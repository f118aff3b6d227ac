"""Clipboard slots: named texts the agent keeps for a device, above any driver."""

from __future__ import annotations

from datetime import UTC, datetime

from remotehands.errors import NotFoundError
from remotehands.protocol.results import SlotInfo, SlotText

__all__ = ["ClipboardSlots"]


def _stamp(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


class ClipboardSlots:
    """Named texts with the time each was stored."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[str, datetime]] = {}

    def store(self, name: str, text: str) -> None:
        """Keep ``text`` under ``name``, replacing what was there."""
        self._slots[name] = (text, datetime.now(UTC))

    def get(self, name: str) -> SlotText:
        """Slot ``name`` with its text; :class:`NotFoundError` when there is none."""
        try:
            text, at = self._slots[name]
        except KeyError:
            raise NotFoundError(
                f"no clipboard slot {name!r}: list the slots to see what is stored"
            ) from None
        return SlotText(name=name, text=text, length=len(text), stored_at=_stamp(at))

    def delete(self, name: str) -> None:
        """Forget slot ``name``; :class:`NotFoundError` when there is none."""
        self.get(name)
        del self._slots[name]

    def clear(self) -> None:
        """Forget every slot."""
        self._slots.clear()

    def listing(self) -> list[SlotInfo]:
        """Every slot without its text, by name."""
        return [
            SlotInfo(name=name, length=len(text), stored_at=_stamp(at))
            for name, (text, at) in sorted(self._slots.items())
        ]
