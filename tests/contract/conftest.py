"""The contract suite's drivers and its ``needs`` marker.

Every test of ``tests/contract`` runs once per driver of :data:`CONTRACT_DRIVERS`: the fake
driver, the fake driver playing a KVM (screen, keyboard, mouse, power, media and a switch) and
the x11 driver on a real Xvfb (with the session's PulseAudio server for its audio, where
``pulseaudio`` is installed). A test marked ``@pytest.mark.needs("clipboard", ...)`` is
skipped, with the reason, for a driver that lacks one of those capabilities.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from remotehands.agent.runtime import make_driver
from remotehands.drivers.base import Driver

_KVM = ["screen", "keyboard", "mouse", "power", "media", "switch"]

CONTRACT_DRIVERS: dict[str, Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]] = {
    "fake": lambda request: ("fake", {"width": 1280, "height": 800}),
    "fake-kvm": lambda request: ("fake", {"serial": "kvm", "capabilities": _KVM}),
    "x11": lambda request: ("x11", _x11_settings(request)),
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


@pytest.fixture(params=list(CONTRACT_DRIVERS))
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A started driver of each kind, built as the agent builds one (name and settings)."""
    name, settings = CONTRACT_DRIVERS[request.param](request)
    instance: Driver = make_driver(name, settings)
    marker = request.node.get_closest_marker("needs")
    async with instance:
        # checked once started: a driver may settle some capabilities as it starts (the x11
        # driver's audio is there when a sound server answers)
        lacking = [c for c in (marker.args if marker else ()) if not instance.has(c)]
        if lacking:
            pytest.skip(f"the {request.param} driver has no {', '.join(lacking)} capability")
        yield instance
