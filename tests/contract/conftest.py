"""The contract suite's drivers and its ``needs`` marker.

Every test of ``tests/contract`` runs once per driver of :data:`CONTRACT_DRIVERS`: the fake
driver, the fake driver playing a KVM (screen, keyboard and mouse only) and the x11 driver on a
real Xvfb. A test marked ``@pytest.mark.needs("clipboard", ...)`` is skipped, with the reason,
for a driver that lacks one of those capabilities.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from remotehands.agent.runtime import make_driver
from remotehands.drivers.base import Driver

_KVM = ["screen", "keyboard", "mouse"]

CONTRACT_DRIVERS: dict[str, Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]] = {
    "fake": lambda request: ("fake", {"width": 1280, "height": 800}),
    "fake-kvm": lambda request: ("fake", {"serial": "kvm", "capabilities": _KVM}),
    "x11": lambda request: ("x11", {"display": request.getfixturevalue("desktop").display}),
}
"""Contract driver id -> (driver name, settings), given the test's request."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): skip for a driver without these capabilities"
    )


_PRESS_AND_DIE = """
import asyncio, json, os, signal, sys
from remotehands.agent.runtime import make_driver
from remotehands.protocol.keys import parse_key

async def main():
    driver = make_driver(sys.argv[1], json.loads(sys.argv[2]))
    await driver.start()
    await driver.key(parse_key("shift"), True)
    await driver.button("left", True)
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would: nothing released

asyncio.run(main())
"""


@pytest.fixture
def left_down(request: pytest.FixtureRequest) -> Callable[[Any], Awaitable[None]]:
    """Leave Shift and the left button down on the driver's device as a killed agent would:
    pressed by another process of the same driver, killed with SIGKILL. A device that lives
    only in this process (the fake drivers) gets them pressed by the driver itself."""
    name, settings = CONTRACT_DRIVERS[request.node.callspec.params["driver"]](request)

    async def press(driver: Any) -> None:
        if name == "fake":
            from remotehands.protocol.keys import parse_key

            await driver.key(parse_key("shift"), True)
            await driver.button("left", True)
            return
        import json

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PRESS_AND_DIE, name, json.dumps(settings)
        )
        assert await asyncio.wait_for(process.wait(), 20) == -9

    return press


@pytest.fixture(params=list(CONTRACT_DRIVERS))
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A started driver of each kind, built as the agent builds one (name and settings)."""
    name, settings = CONTRACT_DRIVERS[request.param](request)
    instance: Driver = make_driver(name, settings)
    marker = request.node.get_closest_marker("needs")
    lacking = [c for c in (marker.args if marker else ()) if not instance.has(c)]
    if lacking:
        pytest.skip(f"the {request.param} driver has no {', '.join(lacking)} capability")
    async with instance:
        yield instance
