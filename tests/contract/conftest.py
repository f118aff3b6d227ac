"""The contract suite's drivers and its ``needs`` marker.

Every test of ``tests/contract`` runs once per driver of :data:`CONTRACT_DRIVERS`: the fake
driver, the fake driver playing a KVM (screen, keyboard, mouse, power, media and a switch), the
x11 driver on a real Xvfb (with the session's PulseAudio server for its audio, where
``pulseaudio`` is installed), and the openctrol driver against the agent's Openctrol face
fronting a fake device. A test marked ``@pytest.mark.needs("clipboard", ...)`` is
skipped, with the reason, for a driver that lacks one of those capabilities.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from remotehands.agent.runtime import make_driver
from remotehands.drivers.base import Driver
from remotehands.drivers.fake import FakeDriver
from tests.integration.openctrol_harness import PASSWORD, serve_openctrol

_KVM = ["screen", "keyboard", "mouse", "power", "media", "switch"]

CONTRACT_DRIVERS: dict[str, Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]] = {
    "fake": lambda request: ("fake", {"width": 1280, "height": 800}),
    "fake-kvm": lambda request: ("fake", {"serial": "kvm", "capabilities": _KVM}),
    "x11": lambda request: ("x11", _x11_settings(request)),
    "openctrol": lambda request: ("openctrol", {}),
}
"""Contract driver id -> (driver name, settings), given the test's request."""


def _x11_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings = {"display": request.getfixturevalue("desktop").display}
    if shutil.which("pulseaudio") is not None:  # its audio on the session's sound server
        settings["pulse_server"] = request.getfixturevalue("sound_server").address
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): skip for a driver without these capabilities"
    )


@contextlib.asynccontextmanager
async def _openctrol_agent() -> AsyncIterator[dict[str, Any]]:
    """An Openctrol agent (the agent's Openctrol face in front of a 1280x800 fake device): the
    openctrol driver's settings that reach it."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "openctrol.key"
        key.write_text(PASSWORD)
        device = FakeDriver(1280, 800)
        async with serve_openctrol(device, {"allow_ha_ids": ["remotehands"]}) as served:
            yield {"url": served.url, "password_file": str(key)}


@pytest.fixture(params=list(CONTRACT_DRIVERS))
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A started driver of each kind, built as the agent builds one (name and settings)."""
    name, settings = CONTRACT_DRIVERS[request.param](request)
    async with contextlib.AsyncExitStack() as stack:
        if name == "openctrol":  # the driver needs an agent to talk to
            settings = await stack.enter_async_context(_openctrol_agent())
        instance: Driver = make_driver(name, settings)
        marker = request.node.get_closest_marker("needs")
        async with instance:
            # checked once started: a driver may settle some capabilities as it starts (the
            # x11 driver's audio is there when a sound server answers)
            lacking = [c for c in (marker.args if marker else ()) if not instance.has(c)]
            if lacking:
                pytest.skip(f"the {request.param} driver has no {', '.join(lacking)} capability")
            yield instance
