"""Wire models shared by every layer: geometry, screens, windows, health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Bounds", "Button", "Health", "ImageFormat", "ScreenInfo", "WindowInfo"]

Button = Literal["left", "right", "middle"]
"""A mouse button."""

ImageFormat = Literal["jpeg", "png", "webp"]
"""An image encoding the agent produces."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bounds(_Model):
    """A rectangle in native screen pixels."""

    x: int
    y: int
    width: int = Field(gt=0)
    height: int = Field(gt=0)

    def contains(self, x: int, y: int) -> bool:
        """Whether the pixel ``(x, y)`` lies inside."""
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


class ScreenInfo(_Model):
    """One screen (monitor) of a device; ``x``/``y`` place it on the virtual desktop."""

    id: int
    width: int
    height: int
    x: int = 0
    y: int = 0


class WindowInfo(_Model):
    """A top-level window as the native API lists it."""

    id: int
    title: str
    process_name: str | None
    pid: int | None
    bounds: Bounds
    is_focused: bool
    is_dialog: bool


class Health(BaseModel):
    """What a heartbeat reports about the machine the agent runs on.

    Extra fields are ignored, so that a newer agent reporting more keeps its link.
    """

    model_config = ConfigDict(extra="ignore")

    uptime_seconds: float
    cpu_percent: float
    memory_percent: float
