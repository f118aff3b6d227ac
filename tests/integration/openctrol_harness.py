"""A device serving the native and Openctrol faces on loopback, with clocks the test moves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.base import FaceContext
from remotehands.agent.faces.listener import create_listener_app
from remotehands.agent.faces.native import native_face
from remotehands.agent.faces.openctrol import OpenctrolFace
from remotehands.agent.framesource import FrameSources
from remotehands.drivers.base import Driver, Screen
from remotehands.drivers.fake import FakeDriver
from remotehands.protocol.models import Bounds, ScreenInfo
from remotehands.serving import bound_address, serve_http

PASSWORD = "openctrol-password"


class Clock:
    """Aware UTC time that moves only when told (starts at the real time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Monotonic:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    """The device's address, its face, its driver and the clocks."""

    address: str
    face: OpenctrolFace
    driver: Driver
    frames: FrameSources | None
    clock: Clock
    monotonic: Monotonic

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@contextlib.asynccontextmanager
async def serve_openctrol(
    driver: Driver,
    settings: Mapping[str, Any] | None = None,
    *,
    clock: Clock | None = None,
    rate: float = 30.0,
) -> AsyncIterator[Served]:
    """Serve ``driver`` with the native and Openctrol faces (password :data:`PASSWORD`)."""
    clock = clock or Clock()
    monotonic = Monotonic()
    frames = FrameSources(driver, rate=rate) if isinstance(driver, Screen) else None
    dispatcher = Dispatcher(driver, frames=frames)
    tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
    context = FaceContext(device="octl-test", dispatcher=dispatcher, tokens=tokens,
                          frames=frames, settings=dict(settings or {}))  # fmt: skip
    face = OpenctrolFace(context, clock=clock, monotonic=monotonic)
    app = create_listener_app([native_face(context), face.face()])
    try:
        async with driver, serve_http(app, "127.0.0.1:0", websockets=True) as server:
            yield Served(bound_address(server), face, driver, frames, clock, monotonic)
    finally:
        if frames is not None:
            await frames.aclose()
        await dispatcher.aclose()


class TwoScreens(FakeDriver):
    """A fake device with a second, smaller screen to the right of the first."""

    def __init__(self) -> None:
        super().__init__(320, 200)
        self.second = np.zeros((100, 160, 4), dtype=np.uint8)

    async def screens(self) -> list[ScreenInfo]:
        return [ScreenInfo(id=0, width=320, height=200),
                ScreenInfo(id=1, width=160, height=100, x=320, y=0)]  # fmt: skip

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> Any:
        if screen_id == 1:
            return self.second
        return await super().grab(screen_id, region)

    async def move(self, x: int, y: int) -> None:
        self.pointer = (x, y)
