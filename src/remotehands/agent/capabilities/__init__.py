"""The agent's action handlers, one module per capability, and what the agent adds above a
driver.

Each module registers its handlers against wire names with
:func:`~remotehands.agent.capabilities.registry.handles`: :mod:`.screen`, :mod:`.mouse`,
:mod:`.keyboard`, :mod:`.clipboard`, :mod:`.windows`, :mod:`.apps`, :mod:`.audio`, :mod:`.power`,
:mod:`.media`, :mod:`.switch` for the driver capabilities of the same names, :mod:`.sequence`
and :mod:`.log` for the agent's own actions. Importing this package fills :data:`HANDLERS`:
every action of the table, exactly once.

:data:`AGENT_CAPABILITIES` are the capabilities the agent provides above every driver; a device
announces each one whose driver capability it needs is there.
"""

from __future__ import annotations

from dataclasses import dataclass

from remotehands.agent.capabilities import (  # noqa: F401 -- imported to register
    apps,
    audio,
    clipboard,
    keyboard,
    log,
    media,
    mouse,
    power,
    screen,
    sequence,
    switch,
    windows,
)
from remotehands.agent.capabilities.registry import HANDLERS, Handler, handles

__all__ = ["AGENT_CAPABILITIES", "HANDLERS", "AgentCapability", "Handler", "handles"]


@dataclass(frozen=True, slots=True)
class AgentCapability:
    """A capability the agent provides above a driver, and the driver capability it needs."""

    summary: str
    needs: str | None = None


AGENT_CAPABILITIES: dict[str, AgentCapability] = {
    "sequence": AgentCapability("ordered batches of actions under the device lock"),
    "stability": AgentCapability("screenshots taken once the screen stopped changing", "screen"),
    "clipboard_slots": AgentCapability("named clipboard slots and batch captures", "clipboard"),
}
"""The agent's own capabilities (OCR joins them in a later issue)."""
