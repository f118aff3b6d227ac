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
    act,
    apps,
    audio,
    clipboard,
    keyboard,
    log,
    media,
    mouse,
    ocr,
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
    "ocr": AgentCapability("the text on the screen, read by the agent (tesseract)", "screen"),
    "act": AgentCapability("batches of steps answered with the settled screen", "screen"),
}
"""The agent's own capabilities: each is announced by a device whose driver has the capability
it needs, and actions of that capability are checked against that need."""
